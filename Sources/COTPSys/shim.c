#define _GNU_SOURCE
#include "COTPSys.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/file.h>
#include <sys/mman.h>
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

/* cotp_release_code_pages: see COTPSys.h. dl_iterate_phdr holds the dynamic loader's lock while it
   calls back, so no object can be unloaded (and its addresses reused) while its ranges are
   advised. Only segments without PF_W are touched: they are mapped read-only and never written
   (no text relocations in position-independent code), so every resident page of them is the
   file's own page in the page cache and dropping this process's mapping of it loses nothing.
   RELRO data, .data and .bss live in PF_W segments and are left alone. Only whole pages inside
   the segment are advised, so a page shared with a neighbouring segment is never touched. */
struct release_tally {
    uintptr_t vdso;
    size_t page;
    size_t bytes;
};

/* An object with text relocations had its read-only segments written by the loader: they hold
   private copies that must not be dropped. (Position-independent objects have none.) */
static int has_text_relocations(const ElfW(Dyn) *dynamic) {
    for (; dynamic->d_tag != DT_NULL; dynamic++) {
        if (dynamic->d_tag == DT_TEXTREL) return 1;
        if (dynamic->d_tag == DT_FLAGS && (dynamic->d_un.d_val & DF_TEXTREL) != 0) return 1;
    }
    return 0;
}

static int release_object_pages(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct release_tally *tally = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *segment = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + segment->p_vaddr;
        if (segment->p_type == PT_LOAD && tally->vdso - start < segment->p_memsz) return 0;
        if (segment->p_type == PT_DYNAMIC && has_text_relocations((const ElfW(Dyn) *)start)) return 0;
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *segment = &info->dlpi_phdr[i];
        if (segment->p_type != PT_LOAD || (segment->p_flags & PF_W) != 0) continue;
        uintptr_t start = info->dlpi_addr + segment->p_vaddr;
        uintptr_t end = start + segment->p_memsz;
        start = (start + tally->page - 1) & ~(uintptr_t)(tally->page - 1);
        end &= ~(uintptr_t)(tally->page - 1);
        if (end <= start) continue;
        if (madvise((void *)start, end - start, MADV_DONTNEED) == 0) tally->bytes += end - start;
    }
    return 0;
}

size_t cotp_release_code_pages(void) {
    struct release_tally tally = {.vdso = 0, .page = (size_t)sysconf(_SC_PAGESIZE), .bytes = 0};
    /* The vDSO is the kernel's own mapping, left alone: the object whose segment holds it. */
    tally.vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    dl_iterate_phdr(release_object_pages, &tally);
    return tally.bytes;
}
