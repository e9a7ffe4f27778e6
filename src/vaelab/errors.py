"""One exception family. Every message names the problem and the fix."""


class VaelabError(Exception):
    """Base class of every error vaelab raises on purpose."""


class ConfigError(VaelabError, ValueError):
    """A configuration value, name or key is invalid."""


class DataError(VaelabError):
    """A dataset is missing, corrupt, truncated or malformed."""


class ModelError(VaelabError):
    """A model cannot be built or used as asked."""


class CheckpointError(VaelabError):
    """A run directory or checkpoint cannot be read, or belongs to something else."""


class TrainingError(VaelabError):
    """Training cannot continue (a non-finite loss, an occupied run directory...)."""


class Interrupted(TrainingError):
    """Training was stopped by Ctrl-C (SIGINT); the message says how to resume."""


class WriteError(VaelabError, OSError):
    """A file cannot be written (a full disk, no permission, a path that cannot exist). Also an
    OSError, so that code which handles a failed write keeps handling it (with its errno)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
