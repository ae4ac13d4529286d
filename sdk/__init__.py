"""What every Unity producer uses: the Plugin base, the sink and the JetStream publisher."""

from sdk.plugin import Metric, NoConfig, Plugin
from sdk.publisher import Publisher
from sdk.sink import Sink, UndeclaredMetricError

__all__ = ["Metric", "NoConfig", "Plugin", "Publisher", "Sink", "UndeclaredMetricError"]
