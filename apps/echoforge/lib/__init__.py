"""The EchoForge MONAI Label app: thin wiring of the ``echoforge`` library into MONAI Label."""
