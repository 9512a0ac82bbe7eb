/* traffic.c - the names of the client message counters (see internal.h):
 * a slot is turned back into its topic and action only when /metrics is
 * written, from the enum descriptors protoc-c generated (TOPIC_RECORD ->
 * "record", RECORD_CREATEANDUPDATE -> "CREATEANDUPDATE"). The counting
 * itself happens where frames are read (dispatch.c) and written (session.c).
 * Not for anything else a broker counts. */
#include <ctype.h>
#include <string.h>

#include "internal.h"

/* The action enum of each topic that has one. */
static const ProtobufCEnumDescriptor *actions_of(int topic)
{
    switch (topic) {
    case TOPIC__TOPIC_PARSER: return &parser__action__descriptor;
    case TOPIC__TOPIC_CONNECTION: return &connection__action__descriptor;
    case TOPIC__TOPIC_AUTH: return &auth__action__descriptor;
    case TOPIC__TOPIC_EVENT: return &event__action__descriptor;
    case TOPIC__TOPIC_RECORD: return &record__action__descriptor;
    case TOPIC__TOPIC_RPC: return &rpc__action__descriptor;
    case TOPIC__TOPIC_PRESENCE: return &presence__action__descriptor;
    default: return NULL;
    }
}

/* The topic of slot ti (-1: the slot of every other value). */
static int topic_of(int ti)
{
    return ti < 12 ? ti : ti == 12 ? 100 : -1;
}

/* The action of slot ai (-1: the slot of every other value). */
static int action_of(int ai)
{
    return ai < 64 ? ai : ai < TRAFFIC_ACTIONS - 1 ? ai + 36 : -1;
}

/* "TOPIC_RECORD" -> "record"; "other" for the catch-all slot. */
static void topic_label(int topic, char *out, size_t cap)
{
    const ProtobufCEnumValue *v = topic >= 0 ? protobuf_c_enum_descriptor_get_value(&topic__descriptor, topic) : NULL;
    if (v == NULL) {
        snprintf(out, cap, topic >= 0 ? "%d" : "other", topic);
        return;
    }
    const char *name = strncmp(v->name, "TOPIC_", 6) == 0 ? v->name + 6 : v->name;
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < cap; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[i] = '\0';
}

/* "RECORD_CREATEANDUPDATE" -> "CREATEANDUPDATE" (the topic's prefix off, as
 * the client's constants name it); the number when the enum has no such value. */
static void action_label(int topic, int action, char *out, size_t cap)
{
    const ProtobufCEnumDescriptor *d = actions_of(topic);
    const ProtobufCEnumValue *v = d != NULL && action >= 0 ? protobuf_c_enum_descriptor_get_value(d, action) : NULL;
    if (v == NULL) {
        snprintf(out, cap, action >= 0 ? "%d" : "other", action);
        return;
    }
    const char *name = v->name, *us = strchr(name, '_');
    snprintf(out, cap, "%s", us != NULL ? us + 1 : name);
}

static void write_family(FILE *f, const char *name, const char *help, const uint64_t (*counts)[TRAFFIC_ACTIONS])
{
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int ti = 0; ti < TRAFFIC_TOPICS; ti++)
        for (int ai = 0; ai < TRAFFIC_ACTIONS; ai++) {
            if (counts[ti][ai] == 0)
                continue;
            char topic[32], action[64];
            topic_label(topic_of(ti), topic, sizeof(topic));
            action_label(topic_of(ti), action_of(ai), action, sizeof(action));
            fprintf(f, "%s{topic=\"%s\",action=\"%s\"} %llu\n", name, topic, action,
                    (unsigned long long)counts[ti][ai]);
        }
}

void traffic_metrics(const traffic *t, FILE *f)
{
    write_family(f, "eddy_client_messages_received_total", "messages websocket clients sent, by topic and action",
                 t->received);
    write_family(f, "eddy_client_messages_sent_total",
                 "messages written to websocket clients, by topic and action (one per receiving client)", t->sent);
}
