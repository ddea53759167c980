"""EchoForge: semi-supervised echocardiography video segmentation.

Annotate two or three frames of an echo video and get every frame segmented (LV cavity,
myocardium, left atrium), with volumes and ejection fraction.
"""

import warnings

# MONAI 1.5 still decorates a few classes with torch.jit.interface, which torch 2.14 flags on import
warnings.filterwarnings("ignore", message=r".*torch\.jit\.interface.* is deprecated", category=FutureWarning)

from echoforge.errors import EchoForgeError  # noqa: E402
from echoforge.video import EchoVideo  # noqa: E402

__version__ = "0.1.0"
__all__ = ["EchoForgeError", "EchoVideo", "__version__"]
