"""The one exception a user can cause: its message is a single sentence naming the problem and the fix."""


class DalkitError(Exception):
    """A problem with the user's input (files, options, budgets); the CLI prints it without a traceback."""
