"""One module per `fdbench` sub-command; each defines `register(subparsers)`."""
