"""hbsm's configuration: `hbsm.toml`, the `HEARTBEAT_*` environment, and their checks.

    loaded = load_config()            # ./hbsm.toml or $HEARTBEAT_CONFIG, then the environment
    loaded.config.services            # what to monitor (the original two without a file)
    loaded.policies["api"]            # the thresholds in force for one service
    loaded.sources["port"]            # "default" | "file" | "env"

A bad configuration raises `ConfigError`, whose `str()` is one line naming the file or
variable, the key and the reason. `hbsm.config.command` is the `hbsm config` subcommand;
`example.toml` beside this module documents every key.
"""

from hbsm.config.env import ENV_VARS, EnvVar
from hbsm.config.errors import ConfigError
from hbsm.config.load import LoadedConfig, load_config
from hbsm.config.model import (
    ApiConfig,
    ClusterConfig,
    Config,
    LogConfig,
    NotifyConfig,
    ProbeConfig,
    RestartConfig,
    ServiceConfig,
    SmtpConfig,
    StepConfig,
    WebhookConfig,
)
from hbsm.config.validate import BUILTIN_STEPS, REPAIR_GROUP

__all__ = [
    "BUILTIN_STEPS",
    "ENV_VARS",
    "REPAIR_GROUP",
    "ApiConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "EnvVar",
    "LoadedConfig",
    "LogConfig",
    "NotifyConfig",
    "ProbeConfig",
    "RestartConfig",
    "ServiceConfig",
    "SmtpConfig",
    "StepConfig",
    "WebhookConfig",
    "load_config",
]
