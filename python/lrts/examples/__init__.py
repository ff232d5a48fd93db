"""Examples shipped with lrts: services in lrts.examples.services, and the applications
``python3 -m lrts.examples.wait_for`` (``wait_for_multi``, ``as_completed``,
``detailed_progress``), which take ``--scheduler-port`` and ``--progress-port``."""
