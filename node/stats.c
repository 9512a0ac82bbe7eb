/* stats.c - the node's /metrics families (all named eddy_node_*, so that
 * standalone can append them to its broker's without a clash), written from
 * the counters of node_stats (internal.h) by any thread. The storage
 * thread's own families are persist.c's (persist_metrics). Not for counting:
 * the modules bump the counters where things happen. */
#include "internal.h"
#include "linktls.h"

static const char *const drop_names[DROP_KINDS] = {
    [DROP_OUTBOX_FULL] = "outbox_full", [DROP_SEND_FAILED] = "send_failed", [DROP_FAULT] = "fault_injected",
    [DROP_PEER_BEHIND] = "peer_behind"};

static const char *const traffic_names[LINK_TRAFFIC_KINDS] = {
    [LINK_REQUEST_IN] = "request_in", [LINK_REPLY_OUT] = "reply_out", [LINK_PULL_IN] = "pull_in",
    [LINK_DELIVERY_OUT] = "delivery_out"};

static void one(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    prom_family(f, name, type, help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

void stats_write(const node_stats *st, const eddy_config *cfg, FILE *f)
{
    prom_family(f, "eddy_node_operations_total", "counter",
                "operations this node applied, by kind (from brokers and backends)");
    for (uint32_t k = 0; k < OP_KIND_MAX; k++) {
        uint64_t v = prom_get(&st->ops[k]);
        if (v > 0)
            fprintf(f, "eddy_node_operations_total{kind=\"%s\"} %llu\n", op_kind_name(k), (unsigned long long)v);
    }
    prom_write_histogram(f, "eddy_node_batch_apply_seconds",
                         "time to apply one request batch (every operation in it) and build its reply", &st->apply);
    one(f, "eddy_node_malformed_total", "counter", "batches and operations refused as malformed",
        prom_get(&st->malformed));
    char unsent_help[128];
    snprintf(unsent_help, sizeof(unsent_help),
             "replies a connection did not take within %d ms (its peer reads none): the connection was closed",
             REPLY_SEND_MS);
    one(f, "eddy_node_replies_unsent_total", "counter", unsent_help, prom_get(&st->replies_unsent));
    one(f, "eddy_node_peers", "gauge", "brokers and backends this node serves", prom_get(&st->peers));
    one(f, "eddy_node_max_peers", "gauge", "cluster.maxPeers: the most peers this node serves at once",
        (uint64_t)cfg->max_peers);
    one(f, "eddy_node_peers_refused_total", "counter", "HELLOs refused because the peer table was full",
        prom_get(&st->peers_refused));
    one(f, "eddy_node_records_cached", "gauge", "records held in memory", prom_get(&st->records));
    one(f, "eddy_node_records_cached_bytes", "gauge", "bytes of the records held in memory",
        prom_get(&st->record_bytes));
    one(f, "eddy_node_deliveries_published_total", "counter",
        "operations published to peers: event deliveries, record updates, RPC and listen messages, answers a write released",
        prom_get(&st->delivered_ops));
    one(f, "eddy_node_delivery_batches_published_total", "counter",
        "delivery batches published (one per peer per pull at most)", prom_get(&st->delivered_batches));
    prom_family(f, "eddy_node_delivery_batches_dropped_total", "counter",
                "delivery batches numbered but not published (the peer sees the gap and recovers), by reason");
    for (int r = 0; r < DROP_KINDS; r++)
        fprintf(f, "eddy_node_delivery_batches_dropped_total{reason=\"%s\"} %llu\n", drop_names[r],
                (unsigned long long)prom_get(&st->dropped[r]));
    static const char *const traffic_help[2] = {
        "messages on this node's cluster links: request batches in, their replies out, pulls in on the delivery "
        "address, and their answers out (a delivery batch, or empty)",
        "bytes of those messages (their bodies)"};
    for (int b = 0; b < 2; b++) {
        const char *name = b == 0 ? "eddy_node_link_messages_total" : "eddy_node_link_bytes_total";
        prom_family(f, name, "counter", traffic_help[b]);
        for (int k = 0; k < LINK_TRAFFIC_KINDS; k++)
            fprintf(f, "%s{direction=\"%s\"} %llu\n", name, traffic_names[k],
                    (unsigned long long)prom_get(b == 0 ? &st->link_msgs[k] : &st->link_bytes[k]));
    }
    prom_family(f, "eddy_node_links_refused_total", "counter",
                "peers refused on the cluster links: by the TLS listener during the handshake (reason tls: no, "
                "a foreign, an expired or a roleless certificate, or no TLS; counted per process), or at HELLO "
                "and after for their certificate's role (reason role)");
    fprintf(f, "eddy_node_links_refused_total{reason=\"tls\"} %llu\n", (unsigned long long)linktls_refused());
    fprintf(f, "eddy_node_links_refused_total{reason=\"role\"} %llu\n", (unsigned long long)prom_get(&st->forbidden));
    one(f, "eddy_node_replica_batches_total", "counter",
        "replication batches from primaries written here (cluster.replicas above 1)",
        prom_get(&st->repl_applied_batches));
    one(f, "eddy_node_replica_records_total", "counter", "record writes from primaries written here",
        prom_get(&st->repl_applied_records));
    one(f, "eddy_node_replica_duplicates_total", "counter",
        "replication batches received again (already written): skipped and acknowledged",
        prom_get(&st->repl_duplicates));
    one(f, "eddy_node_replica_resyncs_total", "counter",
        "replication batches out of sequence: the primary was asked to send again", prom_get(&st->repl_resyncs));
    one(f, "eddy_node_outbox_dropped_total", "counter",
        "answers and record updates dropped before they left: their shard moved to another node meanwhile (the "
        "writer's broker answers it with an error; never acknowledged from here)", prom_get(&st->outbox_dropped));
    one(f, "eddy_node_replica_fenced_total", "counter",
        "replication batches refused: a lower (or unknown) epoch, or a shard the sender is not primary of",
        prom_get(&st->repl_fenced));
    one(f, "eddy_node_replica_snapshots_total", "counter",
        "snapshots from primaries begun here (a replica with no state of a primary's stream, or too far behind: its "
        "copy of those shards dropped, then rewritten)", prom_get(&st->repl_snapshots));
    one(f, "eddy_node_replica_snapshot_records_total", "counter", "records written here from snapshot chunks",
        prom_get(&st->repl_snapshot_records));
    one(f, "eddy_node_replica_snapshot_bytes_total", "counter", "bytes of the snapshot chunks written here",
        prom_get(&st->repl_snapshot_bytes));
    one(f, "eddy_node_permission_denied_total", "counter",
        "record writes a rule reading the record's data denied here (MESSAGE_DENIED)", prom_get(&st->denied));
    one(f, "eddy_node_permission_errors_total", "counter",
        "record rules applied here that failed (MESSAGE_PERMISSION_ERROR)", prom_get(&st->rule_errors));
    static const char *const validation_names[VALIDATE_COUNT_KINDS] = {
        "asked", "accepted", "rejected", "replaced", "moved", "timed_out", "accepted_by_policy", "full", "stray",
        "none_connected"};
    prom_family(f, "eddy_node_validations_total", "counter",
                "record writes validated by backends, by what became of them: asked (requests delivered), "
                "accepted, rejected, replaced, moved (to another validator), timed_out (refused: none answered), "
                "accepted_by_policy (validation.onTimeout or acceptOnTimeout), full (refused: validation.maxPending), "
                "stray (answers ignored), none_connected (refused: validation.required and no validator)");
    for (int k = 0; k < VALIDATE_COUNT_KINDS; k++)
        fprintf(f, "eddy_node_validations_total{outcome=\"%s\"} %llu\n", validation_names[k],
                (unsigned long long)prom_get(&st->validations[k]));
}
