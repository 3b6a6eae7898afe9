"""medmm: a research-grade multimodal diagnostic assistant (research use only; not a medical device)."""

from medmm.offline import keep_offline

__version__ = "0.1.0"

keep_offline()  # before any library that reads the hub and telemetry settings is imported
