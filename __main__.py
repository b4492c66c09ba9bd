"""haproxy-ha: read config -> validated model -> HaCluster -> exports."""

import pulumi

from components.cluster import HaCluster, HaClusterArgs
from components.config.errors import ConfigError
from components.settings import load_settings

try:
    settings = load_settings(pulumi.get_stack())
except ConfigError as exc:  # one line naming the key; nothing has been declared yet
    raise pulumi.RunError(str(exc)) from None

cluster = HaCluster("haproxy-ha", HaClusterArgs(settings))
pulumi.export("vip", cluster.vip)
pulumi.export("vipHolder", settings.cluster.vip_holder.name)
pulumi.export("vips", cluster.vips)  # group -> addresses
pulumi.export("vipHolders", cluster.holders)  # group -> the node holding it while all are healthy
pulumi.export("vrrpStates", cluster.live)  # node -> instance -> MASTER/BACKUP/FAULT, as last read
pulumi.export("drift", cluster.drift)  # node -> what differed from the desired state at the last read
pulumi.export("statsUrl", cluster.stats_url)
pulumi.export("nodes", cluster.node_addresses)
pulumi.export("configHashes", cluster.config_hashes)
pulumi.export("rolloutOrder", cluster.rollout)
pulumi.export("hostKeys", cluster.host_keys)  # node -> SSH host key recorded at the first contact
