"""Where FD looks (METHODS §10): per-image FD sensitivity heatmaps in differentiable feature spaces, and
their agreement with region blur's per-set view.

`bench.sensitivity.heatmaps` computes the maps, `bench.sensitivity.agreement` compares their mass per face
region with region-blur nFD, `bench.sensitivity.report` writes overlays, the HTML page and the report
section.
"""
