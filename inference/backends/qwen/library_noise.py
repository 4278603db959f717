"""Quieting the library messages that say nothing to a LayerLift user.

Importing torchao under torch 2.14 logs two deprecation notes meant for torchao's authors,
and diffusers logs that it cannot find torchao classes it only needs for checkpoints saved
already quantized (LayerLift quantizes at load time). Printed on every model load, they read
like failures in the CLI and the server log. Each filter drops one known message by its
logger and its text, so every other warning of those libraries still comes through.
"""

from __future__ import annotations

import logging

# (logger name, text the message contains)
KNOWN_NOISE: tuple[tuple[str, str], ...] = (
    ("torch.utils._pytree", "is an Enum subclass and is now natively supported"),
    ("diffusers.quantizers.torchao.torchao_quantizer", "Unable to import `torchao` Tensor"),
)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_known_noise() -> None:
    """Install the filters (once); must run before diffusers or torchao is imported."""
    for logger_name, text in KNOWN_NOISE:
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, _DropMessage) and f.text == text for f in logger.filters):
            logger.addFilter(_DropMessage(text))
