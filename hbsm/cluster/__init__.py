"""Several hbsm nodes sharing one log on NATS JetStream (docs/cluster.md): who owns which
service (`leases`: a lease per service in a KV bucket, expiring unless renewed) and who should
(`placement`: rendezvous hashing over the live nodes). Built and tested on their own; a monitor
that decides only for the services it holds is the next step."""
