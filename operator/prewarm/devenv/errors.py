"""The one error type of the local environment: a problem a person must fix."""


class EnvironmentProblem(RuntimeError):
    """Something on this machine stops the local environment from starting.

    Its message says what and how to fix it; the CLI prints it without a traceback.
    """
