"""medmm: a research-grade multimodal diagnostic assistant (research use only; not a medical device)."""

__version__ = "0.1.0"
