"""What every part of the stream harness shares: the recorders' namespace, the instance label
of the grid objects, the downtime threshold, and :class:`StreamError`.
"""


#: Namespace of the recorder pods (never offloaded: they stay where they are put).
RECORDER_NAMESPACE = "labkit-stream"
#: Label every grid object carries with its instance name (``labkit.workloads.render``).
INSTANCE = "app.kubernetes.io/instance"
#: A gap of at least this many seconds between data frames is a downtime.
DOWNTIME_THRESHOLD_S = 0.5


class StreamError(RuntimeError):
    """The chain could not be deployed, or a stream did not behave (the message says which)."""
