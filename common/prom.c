/* prom.c - see prom.h. */
#include "prom.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"

const double prom_bucket_seconds[PROM_BUCKETS] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                                  0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                                  0.1,     0.25,     0.5,     1,      2.5};

/* The same bounds in ns, for the writer's comparisons. */
static const uint64_t bucket_ns[PROM_BUCKETS] = {10000,     25000,     50000,     100000,     250000,    500000,
                                                 1000000,   2500000,   5000000,   10000000,   25000000,  50000000,
                                                 100000000, 250000000, 500000000, 1000000000, 2500000000};

void prom_observe(prom_histogram *h, uint64_t ns)
{
    int i = 0;
    while (i < PROM_BUCKETS && ns > bucket_ns[i])
        i++;
    prom_add(&h->bucket[i], 1);
    prom_add(&h->sum_ns, ns);
}

uint64_t prom_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void prom_family(FILE *f, const char *name, const char *type, const char *help)
{
    if (help != NULL)
        fprintf(f, "# HELP %s %s\n", name, help);
    fprintf(f, "# TYPE %s %s\n", name, type);
}

void prom_write_histogram(FILE *f, const char *name, const char *help, const prom_histogram *h)
{
    prom_family(f, name, "histogram", help);
    uint64_t cumulative = 0;
    for (int i = 0; i < PROM_BUCKETS; i++) {
        cumulative += prom_get(&h->bucket[i]);
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, prom_bucket_seconds[i], (unsigned long long)cumulative);
    }
    cumulative += prom_get(&h->bucket[PROM_BUCKETS]);
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    fprintf(f, "%s_sum %.9f\n", name, (double)prom_get(&h->sum_ns) / 1e9);
    fprintf(f, "%s_count %llu\n", name, (unsigned long long)cumulative);
}

/* Open file descriptors: the entries of /proc/self/fd (less the one reading it). */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* The process's start, in seconds since the Unix epoch: its start in clock
 * ticks after boot (/proc/self/stat, field 22) plus the boot time (/proc/stat). */
static double start_time(void)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL)
        return 0;
    unsigned long long ticks = 0;
    int field = 2; /* p is at the end of field 2 */
    for (; *p != '\0' && field < 22; p++)
        if (*p == ' ')
            field++;
    if (field != 22 || sscanf(p, "%llu", &ticks) != 1)
        return 0;
    unsigned long long btime = 0;
    if ((f = fopen("/proc/stat", "r")) == NULL)
        return 0;
    while (fgets(buf, sizeof(buf), f) != NULL)
        if (sscanf(buf, "btime %llu", &btime) == 1)
            break;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (btime == 0 || hz <= 0)
        return 0;
    return (double)btime + (double)ticks / (double)hz;
}

void prom_write_process(FILE *f, const char *role)
{
    prom_family(f, "eddy_build_info", "gauge", "1, labelled with the version and the role of this process");
    fprintf(f, "eddy_build_info{version=\"%s\",role=\"%s\"} 1\n", EDDY_VERSION, role);
    prom_family(f, "eddy_memory_allocated_bytes", "gauge", "bytes allocated by eddy itself (not its libraries)");
    fprintf(f, "eddy_memory_allocated_bytes %zu\n", mem_used());
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                     (double)ru.ru_stime.tv_usec / 1e6;
        prom_family(f, "process_cpu_seconds_total", "counter", NULL);
        fprintf(f, "process_cpu_seconds_total %.6f\n", cpu);
    }
    FILE *statm = fopen("/proc/self/statm", "r");
    unsigned long long size, resident;
    if (statm != NULL) {
        if (fscanf(statm, "%llu %llu", &size, &resident) == 2) {
            prom_family(f, "process_resident_memory_bytes", "gauge", NULL);
            fprintf(f, "process_resident_memory_bytes %llu\n", resident * (unsigned long long)sysconf(_SC_PAGESIZE));
        }
        fclose(statm);
    }
    long fds = open_fds();
    if (fds >= 0) {
        prom_family(f, "process_open_fds", "gauge", NULL);
        fprintf(f, "process_open_fds %ld\n", fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        prom_family(f, "process_max_fds", "gauge", NULL);
        fprintf(f, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    double started = start_time();
    if (started > 0) {
        prom_family(f, "process_start_time_seconds", "gauge", NULL);
        fprintf(f, "process_start_time_seconds %.2f\n", started);
    }
}
