/*
 * load-client: closed-loop load generator for otpd and the C echo baseline.
 *
 * Opens N connections to a Unix stream socket and keeps K calls outstanding on each. A call is
 * one frame (flag byte 0, 4-byte big-endian length, payload) holding a protobuf
 * `otp.v1.Request { uint64 call_id = 1; string method = 2; uint32 deadline_ms = 3;
 * bytes payload = 4; }`, encoded by hand. Every answer is one frame: for otpd an
 * `otp.v1.Response { uint64 call_id = 1; Status status = 2; bytes payload = 3; }`, matched by
 * call_id (answers may come out of order) and checked for Status.code == 0 (or absent); for
 * the echo server, the request itself, which is recognised and counted as a success.
 *
 * Threads: --threads T epoll loops (default: half the online CPUs, at least 1, at most N),
 * connections spread round-robin.
 * Each loop does one read per readiness event, handles every complete frame in it, sends one new
 * call per answer and writes them all with one send(): the client's cost per call is a fraction
 * of a syscall, so it measures the server and not itself.
 *
 * Timing: the run lasts --warmup + --seconds; only answers received in the last --seconds count
 * towards calls/s, the latency percentiles (from a log-linear histogram: fixed size, <1%
 * error) and the status errors. Every answer counts as a call, an error status too, so a server
 * answering UNIMPLEMENTED still gets a rate; `errors` says whether the figure means anything.
 * Protocol errors (bad flag or length, undecodable answer, unknown call id) and connection
 * errors are counted over the whole run, warm-up included. Calls still outstanding at the end
 * are dropped.
 *
 * Output: one line of key=value pairs, or one JSON object with --json.
 * Exit status: 0 ok; 1 setup failure; 2 the run had errors or completed no calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FRAME_HEADER 5
#define READ_CHUNK (64u * 1024u)
#define MAX_EVENTS 64
#define MAX_INFLIGHT 65536
#define MAX_CONNECTIONS 65536
#define MAX_THREADS 256

/* ---- latency histogram: log-linear, values in nanoseconds --------------------------------- */

#define SUB_BITS 7
#define SUB (1u << SUB_BITS)            /* 128 sub-buckets per power of two: < 0.8% error */
#define HIST_BUCKETS (2u * SUB + 40u * SUB) /* exact below 256 ns, then up to 2^48 ns (~78 h) */

static inline uint32_t hist_index(uint64_t v) {
    if (v < 2u * SUB) return (uint32_t)v;
    int mag = 63 - __builtin_clzll(v); /* >= SUB_BITS + 1 */
    int shift = mag - SUB_BITS;        /* >= 1; v >> shift is in [SUB, 2*SUB) */
    uint64_t idx = 2u * SUB + (uint64_t)(shift - 1) * SUB + ((v >> shift) - SUB);
    return idx < HIST_BUCKETS ? (uint32_t)idx : HIST_BUCKETS - 1;
}

/* The middle of the range of values that map to bucket idx. */
static uint64_t hist_value(uint32_t idx) {
    if (idx < 2u * SUB) return idx;
    uint32_t shift = (idx - 2u * SUB) / SUB + 1;
    uint64_t sub = (idx - 2u * SUB) % SUB + SUB;
    return (sub << shift) + ((1ull << shift) >> 1);
}

/* ---- configuration ------------------------------------------------------------------------ */

static struct {
    const char *socket_path;
    long connections, inflight, threads;
    double seconds, warmup;
    const char *method;
    uint32_t deadline_ms;
    unsigned char *payload;
    size_t payload_len;
    uint32_t max_frame;
    bool json;
    const char *payload_file;
    bool count_rejections;
    double rate; /* calls per second over all connections; 0: as fast as the answers come */
} cfg = {
    .connections = 1,
    .inflight = 1,
    .threads = 0,
    .seconds = 5,
    .warmup = 1,
    .method = "/otp.v1.TwoFactor/Health",
    .max_frame = 64u * 1024u,
};

/* Request fields after call_id (method, deadline, payload) never change: encoded once. */
static unsigned char *req_tail;
static size_t req_tail_len, req_max_len;

/* --payload-file: one payload per call, taken in turn from the file (hex, one per line), so
 * every call can carry a different request (e.g. a fresh challenge's right code). Wraps around
 * when the file is used up (pf_wrapped says so). */
static unsigned char **pf_data;
static size_t *pf_len, pf_count, pf_max;
static _Atomic size_t pf_next;

static uint64_t t_warm_end, t_end; /* CLOCK_MONOTONIC ns */

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline size_t put_varint(unsigned char *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/* Encodes one framed Request into dst (at least req_max_len bytes); returns its length. */
static inline size_t encode_request(unsigned char *dst, uint64_t call_id) {
    unsigned char *m = dst + FRAME_HEADER;
    size_t n = 0;
    m[n++] = 0x08; /* field 1, varint */
    n += put_varint(m + n, call_id);
    memcpy(m + n, req_tail, req_tail_len);
    n += req_tail_len;
    if (pf_count != 0) {
        size_t i = atomic_fetch_add_explicit(&pf_next, 1, memory_order_relaxed) % pf_count;
        m[n++] = 0x22; /* field 4, length-delimited */
        n += put_varint(m + n, pf_len[i]);
        memcpy(m + n, pf_data[i], pf_len[i]);
        n += pf_len[i];
    }
    dst[0] = 0;
    dst[1] = (unsigned char)(n >> 24);
    dst[2] = (unsigned char)(n >> 16);
    dst[3] = (unsigned char)(n >> 8);
    dst[4] = (unsigned char)n;
    return FRAME_HEADER + n;
}

static void build_request_tail(void) {
    size_t mlen = strlen(cfg.method);
    req_tail = malloc(mlen + cfg.payload_len + 32);
    if (req_tail == NULL) abort();
    size_t n = 0;
    req_tail[n++] = 0x12; /* field 2, length-delimited */
    n += put_varint(req_tail + n, mlen);
    memcpy(req_tail + n, cfg.method, mlen);
    n += mlen;
    if (cfg.deadline_ms != 0) {
        req_tail[n++] = 0x18; /* field 3, varint */
        n += put_varint(req_tail + n, cfg.deadline_ms);
    }
    if (cfg.payload_len != 0) {
        req_tail[n++] = 0x22; /* field 4, length-delimited */
        n += put_varint(req_tail + n, cfg.payload_len);
        memcpy(req_tail + n, cfg.payload, cfg.payload_len);
        n += cfg.payload_len;
    }
    req_tail_len = n;
    req_max_len = FRAME_HEADER + 1 + 10 + n + (pf_count != 0 ? 1 + 10 + pf_max : 0);
}

/* ---- protobuf decoding (just enough for Response and Status) ------------------------------ */

static inline bool get_varint(const unsigned char **p, const unsigned char *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        unsigned char b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Skips one field of wire type wt. */
static inline bool skip_field(const unsigned char **p, const unsigned char *end, unsigned wt) {
    uint64_t v;
    switch (wt) {
    case 0: return get_varint(p, end, &v);
    case 1: if (end - *p < 8) return false; *p += 8; return true;
    case 2:
        if (!get_varint(p, end, &v) || v > (uint64_t)(end - *p)) return false;
        *p += v;
        return true;
    case 5: if (end - *p < 4) return false; *p += 4; return true;
    default: return false; /* groups (3, 4) and invalid types */
    }
}

/* Status { int32 code = 1; ... }: the code, 0 when absent. */
static bool parse_status(const unsigned char *p, const unsigned char *end, int32_t *code) {
    *code = 0;
    while (p < end) {
        uint64_t key;
        if (!get_varint(&p, end, &key)) return false;
        unsigned wt = (unsigned)(key & 7);
        if ((key >> 3) == 1) {
            uint64_t v;
            if (wt != 0 || !get_varint(&p, end, &v)) return false;
            *code = (int32_t)(uint32_t)v; /* int32: negatives are 10-byte varints */
        } else if ((key >> 3) == 0 || !skip_field(&p, end, wt)) {
            return false;
        }
    }
    return true;
}

enum verdict { V_OK, V_STATUS, V_UNDECODABLE };

/* The answer's payload, field 1 as a varint: `success` of VerifyResponse and
 * RedeemBackupCodeResponse. False when absent (proto3 default). */
static bool payload_field1_true(const unsigned char *p, const unsigned char *end) {
    while (p < end) {
        uint64_t key, v;
        if (!get_varint(&p, end, &key)) return false;
        if ((key >> 3) == 1 && (key & 7) == 0) return get_varint(&p, end, &v) && v != 0;
        if (!skip_field(&p, end, (unsigned)(key & 7))) return false;
    }
    return false;
}

/* Response { uint64 call_id = 1; Status status = 2; bytes payload = 3; } */
static enum verdict parse_response(const unsigned char *p, size_t len, uint64_t *call_id, int32_t *code,
                                   bool *accepted) {
    const unsigned char *end = p + len;
    *call_id = 0;
    *code = 0;
    *accepted = false;
    while (p < end) {
        uint64_t key, v;
        if (!get_varint(&p, end, &key)) return V_UNDECODABLE;
        unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (field == 1) {
            if (wt != 0 || !get_varint(&p, end, &v)) return V_UNDECODABLE;
            *call_id = v;
        } else if (field == 2) {
            if (wt != 2 || !get_varint(&p, end, &v) || v > (uint64_t)(end - p)) return V_UNDECODABLE;
            if (!parse_status(p, p + v, code)) return V_UNDECODABLE;
            p += v;
        } else if (field == 3 && wt == 2) {
            if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p)) return V_UNDECODABLE;
            *accepted = payload_field1_true(p, p + v);
            p += v;
        } else if (field == 0 || !skip_field(&p, end, wt)) {
            return V_UNDECODABLE;
        }
    }
    return *code == 0 ? V_OK : V_STATUS;
}

/* The echo server returns our Request: field 1 (the call id) then exactly the fixed tail. */
static bool is_echoed_request(const unsigned char *p, size_t len, uint64_t *call_id) {
    const unsigned char *end = p + len;
    if (p >= end || *p++ != 0x08) return false;
    if (!get_varint(&p, end, call_id)) return false;
    return (size_t)(end - p) == req_tail_len && memcmp(p, req_tail, req_tail_len) == 0;
}

/* ---- connections -------------------------------------------------------------------------- */

struct slot {
    uint64_t id; /* 0 = empty; call ids start at 1 */
    uint64_t t_sent;
};

struct stats {
    uint64_t calls;          /* answers received inside the measurement window */
    uint64_t echoed;         /* of those, answers that were our own request echoed */
    uint64_t status_errors;  /* Response with Status.code != 0 (measurement window) */
    uint64_t protocol_errors;/* bad flag, oversize, undecodable, unknown call id (whole run) */
    uint64_t connection_errors; /* EOF/reset while calls were expected (whole run) */
    uint64_t rejected;       /* --count-rejections: OK answers whose payload field 1 is false */
    uint64_t sum_ns, max_ns;
    int32_t last_status;
    uint64_t hist[HIST_BUCKETS];
};

struct conn {
    int fd;
    bool alive, want_out;
    uint64_t next_id;
    /* outstanding calls: open addressing keyed by call id, linear probing */
    struct slot *tab;
    uint64_t tab_mask;
    unsigned char *out;
    size_t out_off, out_len, out_cap;
    unsigned char *in;
    size_t in_len, in_cap;
};

struct worker {
    pthread_t thread;
    int ep;
    struct conn **conns;
    size_t nconns, alive;
    struct stats st;
    /* --rate: calls issued since start, and connections waiting for their turn to send one (a
     * ring of nconns * inflight slots: a connection has at most --inflight calls waiting). */
    uint64_t start, issued;
    struct conn **parked;
    size_t park_cap, park_head, nparked;
};

static void tab_insert(struct conn *c, uint64_t id, uint64_t t) {
    uint64_t i = id & c->tab_mask;
    while (c->tab[i].id != 0) i = (i + 1) & c->tab_mask;
    c->tab[i].id = id;
    c->tab[i].t_sent = t;
}

/* Removes call id; returns its send time, or 0 if it was not outstanding. */
static uint64_t tab_take(struct conn *c, uint64_t id) {
    if (id == 0) return 0;
    uint64_t m = c->tab_mask, i = id & m;
    while (c->tab[i].id != id) {
        if (c->tab[i].id == 0) return 0;
        i = (i + 1) & m;
    }
    uint64_t t = c->tab[i].t_sent;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    uint64_t j = i;
    c->tab[i].id = 0;
    for (;;) {
        j = (j + 1) & m;
        if (c->tab[j].id == 0) break;
        uint64_t home = c->tab[j].id & m;
        bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        c->tab[i] = c->tab[j];
        c->tab[j].id = 0;
        i = j;
    }
    return t;
}

static void conn_dead(struct worker *w, struct conn *c) {
    if (!c->alive) return;
    c->alive = false;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    w->alive--;
}

static inline void queue_call(struct conn *c, uint64_t t) {
    if (c->out_cap - c->out_len < req_max_len) {
        /* Cannot overflow: unwritten + outstanding calls never exceed --inflight. */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    uint64_t id = c->next_id++;
    c->out_len += encode_request(c->out + c->out_len, id);
    tab_insert(c, id, t);
}

static void flush(struct worker *w, struct conn *c);

/* Calls this worker may have issued by `now` under --rate (its share of the rate). */
static inline uint64_t allowed_calls(const struct worker *w, uint64_t now) {
    return (uint64_t)((double)(now - w->start) * cfg.rate / (double)cfg.threads / 1e9) + 1;
}

/* Queues one call on c now, or, over --rate, parks c until the worker may send it. Latency
 * counts from the moment the call is sent, so pacing does not inflate it. */
static inline void issue_or_park(struct worker *w, struct conn *c, uint64_t now) {
    if (cfg.rate <= 0 || (w->nparked == 0 && w->issued < allowed_calls(w, now))) {
        queue_call(c, now);
        w->issued++;
        return;
    }
    w->parked[(w->park_head + w->nparked++) % w->park_cap] = c;
}

/* Sends the parked calls whose turn has come. */
static void release_parked(struct worker *w, uint64_t now) {
    uint64_t allowed = allowed_calls(w, now);
    while (w->nparked > 0 && w->issued < allowed) {
        struct conn *c = w->parked[w->park_head];
        w->park_head = (w->park_head + 1) % w->park_cap;
        w->nparked--;
        if (!c->alive) continue;
        queue_call(c, now);
        w->issued++;
        if (!c->want_out) flush(w, c);
    }
}

static void flush(struct worker *w, struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = true;
            }
            return;
        }
        w->st.connection_errors++;
        conn_dead(w, c);
        return;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = false;
    }
}

static inline void record(struct stats *st, uint64_t lat) {
    st->calls++;
    st->sum_ns += lat;
    if (lat > st->max_ns) st->max_ns = lat;
    st->hist[hist_index(lat)]++;
}

static void on_readable(struct worker *w, struct conn *c) {
    ssize_t n;
    do {
        n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        w->st.connection_errors++;
        conn_dead(w, c);
        return;
    }
    c->in_len += (size_t)n;
    uint64_t now = now_ns();
    bool counting = now >= t_warm_end && now < t_end;
    bool sending = now < t_end;

    size_t pos = 0;
    while (c->in_len - pos >= FRAME_HEADER) {
        const unsigned char *h = c->in + pos;
        uint32_t len = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
        if (h[0] != 0 || len > cfg.max_frame) {
            w->st.protocol_errors++;
            conn_dead(w, c);
            return;
        }
        if (c->in_len - pos < FRAME_HEADER + (size_t)len) break;
        const unsigned char *msg = h + FRAME_HEADER;
        pos += FRAME_HEADER + (size_t)len;

        uint64_t id;
        int32_t code;
        bool accepted;
        enum verdict v = parse_response(msg, len, &id, &code, &accepted);
        bool echoed = false;
        if (v != V_OK && is_echoed_request(msg, len, &id)) {
            v = V_OK;
            echoed = true;
        }
        if (v == V_UNDECODABLE) {
            w->st.protocol_errors++;
            continue; /* unmatched: that call stays outstanding */
        }
        uint64_t sent = tab_take(c, id);
        if (sent == 0) {
            w->st.protocol_errors++; /* unknown or duplicate call id */
            continue;
        }
        if (v == V_STATUS && counting) {
            w->st.status_errors++;
            w->st.last_status = code;
        }
        if (counting) {
            if (cfg.count_rejections && v == V_OK && !accepted) w->st.rejected++;
            record(&w->st, now - sent);
            if (echoed) w->st.echoed++;
        }
        if (sending) issue_or_park(w, c, now);
    }
    c->in_len -= pos;
    if (c->in_len > 0) memmove(c->in, c->in + pos, c->in_len);
    if (c->out_len > c->out_off && !c->want_out) flush(w, c);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    uint64_t start = now_ns();
    w->start = start;
    for (size_t i = 0; i < w->nconns; i++) {
        struct conn *c = w->conns[i];
        for (long k = 0; k < cfg.inflight; k++) issue_or_park(w, c, start);
        if (c->out_len > c->out_off) flush(w, c);
    }
    struct epoll_event evs[MAX_EVENTS];
    while (w->alive > 0) {
        uint64_t now = now_ns();
        if (now >= t_end) break;
        if (w->nparked > 0) release_parked(w, now);
        int timeout = (int)((t_end - now) / 1000000u) + 1;
        if (timeout > 100) timeout = 100;
        if (w->nparked > 0) timeout = 1; /* the next parked call's turn comes within 1 ms */
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            perror("load-client: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c->alive) continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(w, c);
            if (c->alive && (evs[i].events & EPOLLOUT)) flush(w, c);
        }
    }
    return NULL;
}

static int connect_unix(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    /* Blocking connect (waits while the listen backlog is full), then non-blocking I/O. */
    for (int tries = 0; connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0; tries++) {
        if ((errno != EINTR && errno != EAGAIN) || tries > 1000) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        usleep(1000);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ---- command line ------------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: load-client --socket PATH [options]\n"
            "  --connections N    concurrent connections (default 1)\n"
            "  --inflight K       calls outstanding per connection (default 1)\n"
            "  --seconds S        measured duration (default 5)\n"
            "  --warmup S         unmeasured lead-in (default 1)\n"
            "  --threads T        client event loops (default half the online CPUs, >= 1)\n"
            "  --method NAME      Request.method (default /otp.v1.TwoFactor/Health)\n"
            "  --payload-hex HEX  Request.payload (default empty: omitted)\n"
            "  --payload-file F   one Request.payload per call, in turn, from F (hex, one per line)\n"
            "  --count-rejections count OK answers whose payload field 1 (success) is false\n"
            "  --rate R           at most R calls per second over all connections (default 0: as\n"
            "                     fast as answers come); latency counts from each call's send\n"
            "  --deadline-ms MS   Request.deadline_ms (default 0: omitted)\n"
            "  --max-frame BYTES  largest accepted answer (default 65536)\n"
            "  --json             print a JSON object instead of key=value text\n");
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_seconds(const char *s, double lo, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo) || v > 86400) return false;
    *out = v;
    return true;
}

static bool parse_rate(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0) || v > 1e9) return false;
    *out = v;
    return true;
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static bool parse_hex(const char *s) {
    size_t n = strlen(s);
    if (n % 2 != 0) return false;
    cfg.payload = malloc(n / 2 + 1);
    if (cfg.payload == NULL) return false;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        cfg.payload[i] = (unsigned char)(hi << 4 | lo);
    }
    cfg.payload_len = n / 2;
    return true;
}

/* Reads --payload-file: hex payloads, one per line; blank lines are skipped. */
static bool load_payload_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    size_t cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t n;
    bool ok = true;
    while ((n = getline(&line, &line_cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) continue;
        if (n % 2 != 0) { ok = false; break; }
        if (pf_count == cap) {
            cap = cap ? cap * 2 : 1024;
            pf_data = realloc(pf_data, cap * sizeof *pf_data);
            pf_len = realloc(pf_len, cap * sizeof *pf_len);
            if (pf_data == NULL || pf_len == NULL) abort();
        }
        unsigned char *bytes = malloc((size_t)n / 2 + 1);
        if (bytes == NULL) abort();
        for (ssize_t i = 0; i < n / 2; i++) {
            int hi = hexval((unsigned char)line[2 * i]), lo = hexval((unsigned char)line[2 * i + 1]);
            if (hi < 0 || lo < 0) { ok = false; break; }
            bytes[i] = (unsigned char)(hi << 4 | lo);
        }
        if (!ok) { free(bytes); break; }
        pf_data[pf_count] = bytes;
        pf_len[pf_count] = (size_t)n / 2;
        if (pf_len[pf_count] > pf_max) pf_max = pf_len[pf_count];
        pf_count++;
    }
    free(line);
    fclose(f);
    return ok && pf_count > 0;
}

static double percentile_us(const uint64_t *hist, uint64_t total, double q) {
    if (total == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if ((double)rank < q * (double)total) rank++;
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) return (double)hist_value(i) / 1000.0;
    }
    return (double)hist_value(HIST_BUCKETS - 1) / 1000.0;
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},      {"connections", required_argument, NULL, 'c'},
        {"inflight", required_argument, NULL, 'k'},    {"seconds", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},      {"threads", required_argument, NULL, 't'},
        {"method", required_argument, NULL, 'm'},      {"payload-hex", required_argument, NULL, 'p'},
        {"deadline-ms", required_argument, NULL, 'D'}, {"max-frame", required_argument, NULL, 'F'},
        {"json", no_argument, NULL, 'j'},              {"help", no_argument, NULL, 'h'},
        {"payload-file", required_argument, NULL, 'P'}, {"count-rejections", no_argument, NULL, 'R'},
        {"rate", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    int o, idx = 0;
    while ((o = getopt_long(argc, argv, "s:c:k:d:w:t:m:p:D:F:jhP:Rr:", opts, &idx)) != -1) {
        long v = 0;
        bool ok = true;
        switch (o) {
        case 's': cfg.socket_path = optarg; break;
        case 'c': ok = parse_long(optarg, 1, MAX_CONNECTIONS, &cfg.connections); break;
        case 'k': ok = parse_long(optarg, 1, MAX_INFLIGHT, &cfg.inflight); break;
        case 'd': ok = parse_seconds(optarg, 0.001, &cfg.seconds); break;
        case 'w': ok = parse_seconds(optarg, 0, &cfg.warmup); break;
        case 't': ok = parse_long(optarg, 1, MAX_THREADS, &cfg.threads); break;
        case 'm': cfg.method = optarg; break;
        case 'p': ok = parse_hex(optarg); break;
        case 'D': ok = parse_long(optarg, 0, UINT32_MAX, &v); cfg.deadline_ms = (uint32_t)v; break;
        case 'F': ok = parse_long(optarg, 1, 1L << 30, &v); cfg.max_frame = (uint32_t)v; break;
        case 'j': cfg.json = true; break;
        case 'P': cfg.payload_file = optarg; ok = load_payload_file(optarg); break;
        case 'R': cfg.count_rejections = true; break;
        case 'r': ok = parse_rate(optarg, &cfg.rate); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
        if (!ok) {
            fprintf(stderr, "load-client: bad value for an option: %s\n", optarg);
            return 1;
        }
    }
    if (cfg.socket_path == NULL || optind != argc) {
        usage(stderr);
        return 1;
    }
    if (strlen(cfg.socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "load-client: socket path too long\n");
        return 1;
    }
    build_request_tail();
    if (req_max_len - FRAME_HEADER > cfg.max_frame) {
        fprintf(stderr, "load-client: request larger than --max-frame\n");
        return 1;
    }
    if (cfg.threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (cpus < 1) cpus = 1;
        /* Half the CPUs, the rest for the server: on 2 cores one client loop, which batches more
         * answers per epoll_wait and measured faster than two against the echo server. */
        long half = cpus / 2 > 0 ? cpus / 2 : 1;
        cfg.threads = cfg.connections < half ? cfg.connections : half;
    }
    if (cfg.threads > cfg.connections) cfg.threads = cfg.connections;
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)cfg.connections + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)cfg.connections + 64 ? rl.rlim_max : (rlim_t)cfg.connections + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct worker *workers = calloc((size_t)cfg.threads, sizeof *workers);
    struct conn *conns = calloc((size_t)cfg.connections, sizeof *conns);
    if (workers == NULL || conns == NULL) abort();
    for (long t = 0; t < cfg.threads; t++) {
        workers[t].ep = epoll_create1(EPOLL_CLOEXEC);
        workers[t].conns = calloc((size_t)(cfg.connections / cfg.threads + 1), sizeof(struct conn *));
        workers[t].park_cap = (size_t)(cfg.connections / cfg.threads + 1) * (size_t)cfg.inflight;
        workers[t].parked = calloc(workers[t].park_cap, sizeof(struct conn *));
        if (workers[t].ep < 0 || workers[t].conns == NULL || workers[t].parked == NULL) {
            perror("load-client: epoll_create1");
            return 1;
        }
    }
    uint64_t tab_size = 2;
    while (tab_size < 2 * (uint64_t)cfg.inflight) tab_size *= 2;
    for (long i = 0; i < cfg.connections; i++) {
        struct conn *c = &conns[i];
        c->fd = connect_unix(cfg.socket_path);
        if (c->fd < 0) {
            fprintf(stderr, "load-client: connect %s (connection %ld): %s\n", cfg.socket_path, i + 1,
                    strerror(errno));
            return 1;
        }
        c->alive = true;
        c->next_id = 1;
        c->tab_mask = tab_size - 1;
        c->tab = calloc(tab_size, sizeof *c->tab);
        c->out_cap = (size_t)cfg.inflight * req_max_len;
        c->out = malloc(c->out_cap);
        c->in_cap = FRAME_HEADER + (size_t)cfg.max_frame + READ_CHUNK;
        c->in = malloc(c->in_cap);
        if (c->tab == NULL || c->out == NULL || c->in == NULL) abort();
        struct worker *w = &workers[i % cfg.threads];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
            perror("load-client: epoll_ctl");
            return 1;
        }
        w->conns[w->nconns++] = c;
        w->alive++;
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t0 = now_ns();
    t_warm_end = t0 + (uint64_t)(cfg.warmup * 1e9);
    t_end = t_warm_end + (uint64_t)(cfg.seconds * 1e9);
    for (long t = 0; t < cfg.threads; t++) {
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) {
            fprintf(stderr, "load-client: pthread_create failed\n");
            return 1;
        }
    }

    static struct stats total;
    size_t alive = 0;
    for (long t = 0; t < cfg.threads; t++) {
        pthread_join(workers[t].thread, NULL);
        struct stats *s = &workers[t].st;
        total.calls += s->calls;
        total.echoed += s->echoed;
        total.status_errors += s->status_errors;
        total.protocol_errors += s->protocol_errors;
        total.connection_errors += s->connection_errors;
        total.rejected += s->rejected;
        total.sum_ns += s->sum_ns;
        if (s->max_ns > total.max_ns) total.max_ns = s->max_ns;
        if (s->status_errors) total.last_status = s->last_status;
        for (uint32_t i = 0; i < HIST_BUCKETS; i++) total.hist[i] += s->hist[i];
        alive += workers[t].alive;
    }
    uint64_t t1 = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    double cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                   (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    double wall_s = (double)(t1 - t0) / 1e9;
    double client_cpu = wall_s > 0 ? 100.0 * cpu_s / wall_s : 0; /* % of one core */

    uint64_t errors = total.status_errors + total.protocol_errors + total.connection_errors;
    double rate = (double)total.calls / cfg.seconds;
    double p50 = percentile_us(total.hist, total.calls, 0.50);
    double p90 = percentile_us(total.hist, total.calls, 0.90);
    double p99 = percentile_us(total.hist, total.calls, 0.99);
    double p999 = percentile_us(total.hist, total.calls, 0.999);
    double mean = total.calls ? (double)total.sum_ns / (double)total.calls / 1000.0 : 0;
    double max = (double)total.max_ns / 1000.0;

    if (cfg.json) {
        printf("{\"socket\":");
        json_string(cfg.socket_path);
        printf(",\"method\":");
        json_string(cfg.method);
        printf(",\"connections\":%ld,\"inflight\":%ld,\"threads\":%ld,\"warmup_s\":%g,\"seconds\":%g,"
               "\"calls\":%" PRIu64 ",\"calls_per_s\":%.1f,\"echoed\":%" PRIu64 ","
               "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f,"
               "\"errors\":%" PRIu64 ",\"status_errors\":%" PRIu64 ",\"last_status_code\":%d,"
               "\"protocol_errors\":%" PRIu64 ",\"connection_errors\":%" PRIu64 ","
               "\"connections_alive\":%zu,\"client_cpu_pct\":%.1f,\"rejected\":%" PRIu64 ",\"payloads\":%zu,"
               "\"payloads_wrapped\":%s}\n",
               cfg.connections, cfg.inflight, cfg.threads, cfg.warmup, cfg.seconds, total.calls, rate,
               total.echoed, p50, p90, p99, p999, mean, max, errors, total.status_errors, total.last_status,
               total.protocol_errors, total.connection_errors, alive, client_cpu, total.rejected, pf_count,
               atomic_load(&pf_next) > pf_count ? "true" : "false");
    } else {
        printf("connections=%ld inflight=%ld threads=%ld seconds=%g calls=%" PRIu64 " calls/s=%.0f p50_us=%.1f p99_us=%.1f "
               "p999_us=%.1f max_us=%.1f errors=%" PRIu64 " (status=%" PRIu64 " protocol=%" PRIu64
               " connection=%" PRIu64 ") client_cpu=%.0f%%",
               cfg.connections, cfg.inflight, cfg.threads, cfg.seconds, total.calls, rate, p50, p99, p999, max, errors,
               total.status_errors, total.protocol_errors, total.connection_errors, client_cpu);
        if (cfg.count_rejections) printf(" rejected=%" PRIu64, total.rejected);
        if (pf_count != 0)
            printf(" payloads=%zu%s", pf_count, atomic_load(&pf_next) > pf_count ? " (wrapped: some reused)" : "");
        printf("\n");
    }
    fflush(stdout);

    for (long i = 0; i < cfg.connections; i++) {
        if (conns[i].alive) close(conns[i].fd);
        free(conns[i].tab);
        free(conns[i].out);
        free(conns[i].in);
    }
    for (long t = 0; t < cfg.threads; t++) {
        close(workers[t].ep);
        free(workers[t].conns);
        free(workers[t].parked);
    }
    free(conns);
    free(workers);
    free(req_tail);
    free(cfg.payload);
    return (errors > 0 || total.calls == 0) ? 2 : 0;
}
