"""SR model zoo: ``create(name, scale, weights)`` builds any registered architecture."""
from ._registry import ModelSpec, SRInfo, create, get_spec, list_models, register, sr_info
from .checkpoints import CheckpointError, read_checkpoint

# Each family module registers its specs on import (explicit list: no folder scanning).
from . import abpn, bsrn, carn, edsr, espcn, fsrcnn, imdn, pan, rdn, rfdn, rlfn, srresnet, vdsr, xcat  # noqa: E402,F401

__all__ = ["ModelSpec", "SRInfo", "CheckpointError", "create", "get_spec", "list_models", "read_checkpoint", "register", "sr_info"]
