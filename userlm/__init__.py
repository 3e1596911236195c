"""Core of the user-model toolkit: model references, the role-flipping chat format, configs, data."""

__version__ = "0.1.0"
END_OF_CONVERSATION = "<|endconversation|>"
