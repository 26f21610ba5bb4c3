// Tiny POSIX shims for otpd: what Swift cannot import directly (struct ucred and SO_PEERCRED
// need _GNU_SOURCE) and sd_notify. Everything is prefixed cotp_.
#ifndef COTPSYS_H
#define COTPSYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Mirror of Linux's `struct ucred` (checked with _Static_assert in the .c file).
typedef struct cotp_ucred {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} cotp_ucred;

/// SOL_SOCKET and SO_PEERCRED.
int cotp_sol_socket(void);
int cotp_so_peercred(void);

/// Sends `state` (e.g. "READY=1") to $NOTIFY_SOCKET, as sd_notify(3) does. Returns 1 when sent,
/// 0 when NOTIFY_SOCKET is unset, -1 with errno on failure.
int cotp_sd_notify(const char *state);

/// Takes an exclusive, non-blocking flock(2) on `path` (created 0600 if missing; opened with
/// O_NOFOLLOW and O_CLOEXEC). Returns the descriptor (kept open for the life of the process),
/// -1 with errno (EWOULDBLOCK: held; ELOOP: `path` is a symbolic link), or -2 when `path` is
/// not a regular file.
int cotp_lock_file(const char *path);

/// 1 when something accepts connections on the Unix socket at `path`, 0 when nothing does
/// (ECONNREFUSED / ENOENT), -1 with errno for other failures.
int cotp_unix_socket_is_live(const char *path);

/// Starts `path` (argv[0] = path) with the environment `envp` (NULL-terminated), its stdin
/// reading `input_length` bytes of `input` from a pipe, stdout and stderr inherited, and every
/// other descriptor closed. Writes the child's pid to `pid_out`. Returns 0, or an errno value.
/// A child that exits without reading its input does not hurt the caller (EPIPE is ignored).
int cotp_spawn_with_input(const char *path, char *const envp[], const void *input, size_t input_length,
                          pid_t *pid_out);

/// Gives the C heap's free memory back to the system (glibc's malloc_trim(0), which also
/// releases free pages inside the heap, in every arena). Returns 1 when memory was released.
int cotp_release_free_memory(void);

/// Drops this process's mappings of the resident pages of every loaded object's read-only
/// segments (code and constants of otpd and its libraries; never writable data), as a kernel
/// frees its init sections once booted: the pages stay in the page cache, and a page that is
/// used again is mapped again on its next access. Safe at any time, from any thread: running
/// code only takes a minor page fault. (A debugger's breakpoints set before the call are
/// dropped with the pages.) Returns the bytes of address space advised (not all of them were
/// resident).
size_t cotp_release_code_pages(void);

#endif
