"""The LlmMultiChat microkernel: event bus, plugin lifecycle, configuration and routing."""

__version__ = "0.1.0"
