#define _GNU_SOURCE
#include "COTPSys.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <spawn.h>
#include <signal.h>
#include <sys/un.h>
#include <unistd.h>

_Static_assert(sizeof(cotp_ucred) == sizeof(struct ucred), "cotp_ucred mirrors struct ucred");
_Static_assert(offsetof(cotp_ucred, pid) == offsetof(struct ucred, pid), "pid offset");
_Static_assert(offsetof(cotp_ucred, uid) == offsetof(struct ucred, uid), "uid offset");
_Static_assert(offsetof(cotp_ucred, gid) == offsetof(struct ucred, gid), "gid offset");

int cotp_sol_socket(void) { return SOL_SOCKET; }
int cotp_so_peercred(void) { return SO_PEERCRED; }

static int fill_sockaddr(const char *path, struct sockaddr_un *addr, socklen_t *len) {
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(addr->sun_path)) { errno = ENAMETOOLONG; return -1; }
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    memcpy(addr->sun_path, path, n);
    if (path[0] == '@') addr->sun_path[0] = '\0';  // abstract namespace, as systemd allows
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 0;
}

int cotp_sd_notify(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0') return 0;
    struct sockaddr_un addr;
    socklen_t len;
    if (fill_sockaddr(path, &addr, &len) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t sent;
    do {
        sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr, len);
    } while (sent < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return sent < 0 ? -1 : 1;
}

int cotp_lock_file(const char *path) {
    int fd;
    /* O_NOFOLLOW: a symlink planted at the lock's path would otherwise make otpd create or
       open (and keep open) a file of the planter's choosing; open fails with ELOOP instead. */
    do { fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600); } while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    struct stat info;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        close(fd);
        return -2;
    }
    int rc;
    do { rc = flock(fd, LOCK_EX | LOCK_NB); } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cotp_unix_socket_is_live(const char *path) {
    struct sockaddr_un addr;
    socklen_t len;
    if (fill_sockaddr(path, &addr, &len) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int rc;
    do { rc = connect(fd, (struct sockaddr *)&addr, len); } while (rc != 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (rc == 0) return 1;
    if (saved == ECONNREFUSED || saved == ENOENT) return 0;
    errno = saved;
    return -1;
}

int cotp_spawn_with_input(const char *path, char *const envp[], const void *input, size_t input_length,
                          pid_t *pid_out) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) return errno;
    posix_spawn_file_actions_t actions;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) {
        close(ends[0]);
        close(ends[1]);
        return rc;
    }
    if ((rc = posix_spawn_file_actions_adddup2(&actions, ends[0], 0)) == 0) {
        rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    }
    char *const argv[] = {(char *)path, NULL};
    if (rc == 0) rc = posix_spawn(pid_out, path, &actions, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    close(ends[0]);
    if (rc == 0) {
        /* The input is small (one event), far below a pipe's buffer: this never waits for the
           reader. MSG_NOSIGNAL does not exist for pipes, so SIGPIPE must be ignored by the
           process (otpd does at start-up); a failed write only means the child did not read. */
        const char *bytes = input;
        size_t done = 0;
        while (done < input_length) {
            ssize_t n = write(ends[1], bytes + done, input_length - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            done += (size_t)n;
        }
    }
    close(ends[1]);
    return rc;
}

int cotp_release_free_memory(void) { return malloc_trim(0); }
