/*
 * echo-server: the C baseline for otpd's benchmark.
 *
 * Listens on a filesystem Unix stream socket, reads gRPC-style length-prefixed frames
 * (1 flag byte that must be 0, a 4-byte big-endian length, that many bytes) and writes every
 * complete frame back unchanged. It does the least work a server speaking the same framing can
 * do, so `otpd calls/s / echo calls/s` says how much of the budget otpd spends on its own work.
 *
 * epoll, level-triggered, non-blocking sockets. --threads N runs N event loops sharing the
 * listening socket (EPOLLEXCLUSIVE spreads accepts); each connection stays on the loop that
 * accepted it. A bad flag byte or an oversized frame closes that connection only.
 *
 *   echo-server --socket PATH [--threads N] [--max-frame BYTES] [--backlog N]
 *
 * SIGINT/SIGTERM remove the socket file and exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define FRAME_HEADER 5
#define READ_CHUNK (64u * 1024u)
#define MAX_EVENTS 128

struct conn {
    int fd;
    bool writing;          /* output pending: interest is EPOLLOUT only (backpressure) */
    unsigned char *in;     /* bytes read, not yet part of a complete frame */
    size_t in_len, in_cap;
    unsigned char *out;    /* complete frames not yet written back */
    size_t out_off, out_len, out_cap;
};

static int listen_fd = -1;
static uint32_t max_frame = 64u * 1024u;

static void die(const char *what) {
    fprintf(stderr, "echo-server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void conn_close(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void set_interest(int ep, struct conn *c, bool writing) {
    if (c->writing == writing) return;
    struct epoll_event ev = {.events = writing ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) die("epoll_ctl(MOD)");
    c->writing = writing;
}

/* Writes pending output. Returns false if the connection must be closed. */
static bool flush_out(int ep, struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_interest(ep, c, true);
            return true;
        } else {
            return false;
        }
    }
    c->out_off = c->out_len = 0;
    set_interest(ep, c, false);
    return true;
}

/* Queues `len` bytes for writing, growing the output buffer as needed. */
static void queue_out(struct conn *c, const unsigned char *p, size_t len) {
    if (c->out_off > 0 && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + len > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + len > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 4096;
            while (cap < c->out_len + len) cap *= 2;
            unsigned char *o = realloc(c->out, cap);
            if (o == NULL) die("realloc");
            c->out = o;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, p, len);
    c->out_len += len;
}

/* One read; echoes every complete frame. Returns false if the connection must be closed. */
static bool on_readable(int ep, struct conn *c) {
    ssize_t n;
    do {
        n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    } while (n < 0 && errno == EINTR);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    c->in_len += (size_t)n;

    /* The longest prefix made of complete, valid frames. */
    size_t pos = 0;
    while (c->in_len - pos >= FRAME_HEADER) {
        const unsigned char *h = c->in + pos;
        if (h[0] != 0) return false; /* compressed or garbage: refuse */
        uint32_t len = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
        if (len > max_frame) return false;
        if (c->in_len - pos < FRAME_HEADER + (size_t)len) break;
        pos += FRAME_HEADER + (size_t)len;
    }
    if (pos == 0) return true;

    size_t done = 0;
    if (c->out_len == c->out_off) {
        /* Fast path: nothing pending, write straight from the input buffer. */
        while (done < pos) {
            ssize_t w = send(c->fd, c->in + done, pos - done, MSG_NOSIGNAL);
            if (w > 0) {
                done += (size_t)w;
            } else if (w < 0 && errno == EINTR) {
                continue;
            } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else {
                return false;
            }
        }
    }
    if (done < pos) {
        queue_out(c, c->in + done, pos - done);
        set_interest(ep, c, true); /* stop reading until the peer drains its responses */
    }
    c->in_len -= pos;
    if (c->in_len > 0) memmove(c->in, c->in + pos, c->in_len);
    return true;
}

static void accept_all(int ep) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EMFILE || errno == ENFILE) {
                fprintf(stderr, "echo-server: accept: %s\n", strerror(errno));
                usleep(10000); /* level-triggered: avoid a hot loop while out of descriptors */
                return;
            }
            die("accept4");
        }
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) die("calloc");
        c->fd = fd;
        c->in_cap = FRAME_HEADER + (size_t)max_frame + READ_CHUNK;
        c->in = malloc(c->in_cap);
        if (c->in == NULL) die("malloc");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl(ADD)");
    }
}

static void *event_loop(void *arg) {
    bool exclusive = *(bool *)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN | (exclusive ? EPOLLEXCLUSIVE : 0), .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &lev) != 0) die("epoll_ctl(listen)");

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                accept_all(ep);
                continue;
            }
            bool ok;
            if (c->writing)
                ok = (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) ? flush_out(ep, c) : true;
            else
                ok = on_readable(ep, c); /* EPOLLHUP/EPOLLERR surface as read() == 0 / -1 */
            if (!ok) conn_close(ep, c);
        }
    }
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: echo-server --socket PATH [--threads N] [--max-frame BYTES] [--backlog N]\n"
            "  Echoes length-prefixed frames (flag byte 0, 4-byte big-endian length, payload).\n"
            "  --threads N        event-loop threads (default 1)\n"
            "  --max-frame BYTES  largest accepted frame payload (default 65536)\n"
            "  --backlog N        listen backlog (default 4096)\n");
}

int main(int argc, char **argv) {
    const char *path = NULL;
    long threads = 1, backlog = 4096;
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},   {"threads", required_argument, NULL, 't'},
        {"max-frame", required_argument, NULL, 'm'}, {"backlog", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "s:t:m:b:h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (o) {
        case 's': path = optarg; break;
        case 't': threads = strtol(optarg, &end, 10); break;
        case 'm': {
            long v = strtol(optarg, &end, 10);
            if (v < 1 || v > (1L << 30)) end = optarg;
            max_frame = (uint32_t)v;
            break;
        }
        case 'b': backlog = strtol(optarg, &end, 10); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (end != NULL && (*end != '\0' || end == optarg)) {
            fprintf(stderr, "echo-server: bad option value: %s\n", optarg);
            return 2;
        }
    }
    if (path == NULL || optind != argc || threads < 1 || threads > 256 || backlog < 1) {
        usage(stderr);
        return 2;
    }

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "echo-server: socket path too long: %s\n", path);
        return 2;
    }
    strcpy(addr.sun_path, path);

    /* Replace a stale socket from an earlier run, never any other kind of file. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "echo-server: %s exists and is not a socket\n", path);
            return 1;
        }
        unlink(path);
    }

    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) die("socket");
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
    if (listen(listen_fd, (int)backlog) != 0) die("listen");

    /* Workers inherit a mask with SIGINT/SIGTERM blocked; only main() receives them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static bool exclusive;
    exclusive = threads > 1;
    for (long i = 0; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, event_loop, &exclusive) != 0) {
            fprintf(stderr, "echo-server: pthread_create failed\n");
            return 1;
        }
        pthread_detach(t);
    }

    int sig = 0;
    sigwait(&sigs, &sig);
    unlink(path);
    return 0;
}
