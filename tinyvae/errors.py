"""The library's error types.

Every error tinyvae raises on purpose derives from :class:`TinyVAEError`.
The command line catches exactly this type, prints its message and exits
with status 2, without a traceback.
"""


class TinyVAEError(Exception):
    """Base class of every error tinyvae raises on purpose."""


class ConfigError(TinyVAEError, ValueError):
    """A bad argument: unknown model or dataset, bad size, bad rate, bad shape or dtype."""


class DataError(TinyVAEError):
    """Data files missing, unreachable, truncated or corrupt."""


class CheckpointError(TinyVAEError):
    """A checkpoint that is missing, corrupt, truncated or belongs to another model."""


class TrainingDiverged(TinyVAEError):
    """The loss became NaN or infinite; training stopped before the bad state was saved."""


class Interrupted(TinyVAEError):
    """Training was stopped by SIGINT or SIGTERM after saving a checkpoint.

    ``exit_code`` is the shell's convention for the signal (130 for SIGINT).
    """

    def __init__(self, message, exit_code=130):
        super().__init__(message)
        self.exit_code = exit_code
