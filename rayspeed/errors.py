"""Exceptions users see. Picklable, so they survive crossing Ray process boundaries."""


class RayspeedError(Exception):
    """Base of every error rayspeed raises on purpose; the CLI prints it without a traceback.
    Its text names files and URIs as given, so credentials in a URI are blanked when it is shown."""

    def __reduce__(self):
        return (type(self), self.args)

    def __str__(self) -> str:
        from rayspeed.config.redact import redact_text  # config imports this module

        return redact_text(self._text())

    def _text(self) -> str:
        return super().__str__()


class ConfigError(RayspeedError, ValueError):
    """The experiment file, an override or the command line is wrong; one line per problem."""

    def __init__(self, problems: list[str] | str):
        problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(problems)
        self.problems = problems

    def _text(self) -> str:
        return "\n".join(self.problems)


class RunStateError(RayspeedError):
    """What is already in storage forbids the requested run (exists without --resume, etc.)."""


class ClusterError(RayspeedError):
    """The Ray cluster cannot be reached or can never run the requested scaling."""


class DataError(RayspeedError):
    """The data source cannot be read or does not fit the `data` section."""


class TrainingFailed(RayspeedError):
    """Training raised more often than `run.max_failures` allows; the run keeps its checkpoints."""



class ContinuityError(RayspeedError):
    """A restored run would not continue at the step after its checkpoint (a gap or a repeat)."""


class RunStopped(RayspeedError):
    """The run stopped on request (SIGTERM) after writing a checkpoint; `--resume` continues it."""
