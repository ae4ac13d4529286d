"""What every Unity producer uses: the Plugin base, the sink, the JetStream publisher, the runner.

Write a plugin by subclassing :class:`Plugin`; run it inside the collector (entry point
``unity.plugins``) or as a process of its own with :func:`run`. See ``sdk/README.md``.
"""

from unity.sdk.connection import ConnectionSettings, ConnectionSettingsError
from unity.sdk.plugin import ConfigError, Health, Metric, NoConfig, Plugin
from unity.sdk.publisher import Publisher
from unity.sdk.sink import Sink, UndeclaredMetricError
from unity.sdk.standalone import Standalone, run

__all__ = [
    "ConfigError",
    "ConnectionSettings",
    "ConnectionSettingsError",
    "Health",
    "Metric",
    "NoConfig",
    "Plugin",
    "Publisher",
    "Sink",
    "Standalone",
    "UndeclaredMetricError",
    "run",
]
