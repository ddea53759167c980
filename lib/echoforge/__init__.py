"""EchoForge: semi-supervised echocardiography video segmentation.

Annotate two or three frames of an echo video and get every frame segmented (LV cavity,
myocardium, left atrium), with volumes and ejection fraction.
"""

from echoforge.errors import EchoForgeError
from echoforge.video import EchoVideo

__version__ = "0.1.0"
__all__ = ["EchoForgeError", "EchoVideo", "__version__"]
