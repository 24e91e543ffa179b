"""Exceptions users see. Picklable, so they survive crossing Ray process boundaries."""


class RayspeedError(Exception):
    """Base of every error rayspeed raises on purpose; the CLI prints it without a traceback.
    Its text names files and URIs as given, so a URI's credentials are blanked as it is made (it is
    printed, logged by Ray, and pickled into Tune's results)."""

    def __init__(self, *args):
        from rayspeed.config.redact import redact  # config imports this module

        super().__init__(*redact(list(args)))

    def __reduce__(self):
        return (type(self), self.args)


class ConfigError(RayspeedError, ValueError):
    """The experiment file, an override or the command line is wrong; one line per problem."""

    def __init__(self, problems: list[str] | str):
        super().__init__([problems] if isinstance(problems, str) else list(problems))
        self.problems = self.args[0]

    def __str__(self) -> str:
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
