/*
 * kata-monitor: the guest agent's per-process helper (one per container init, exec or root-env
 * process). It does the three things Node cannot do itself:
 *
 *  - be a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so that a process runc leaves behind
 *    (`runc create`, `runc exec --detach`) is reparented to it and its exit status can be read;
 *  - receive a pty master over runc's --console-socket (SCM_RIGHTS) or allocate a pty itself;
 *  - set a pty's window size (TIOCSWINSZ).
 *
 * Usage: kata-monitor [-f FIFODIR | -t [-c SOCKET]] [-p PIDFILE] [-w ROWS:COLS] -- PROGRAM ARGS...
 *
 *  -f DIR     pipe mode: make the FIFOs DIR/0 DIR/1 DIR/2 (stdin, stdout, stderr), tell the agent
 *             ("fifos"), wait for "go" (the agent has opened its ends), then give the program the
 *             FIFOs as fds 0/1/2, opened so that the program is the only reader of 0 and the only
 *             writer of 1 and 2 (EOF and EPIPE work as with pipe(2)). The FIFOs are unlinked.
 *  -t         terminal mode: relay between the pty master and fds 0 (input) and 1 (output). EOF
 *             on fd 0 writes the terminal's VEOF character once. Without -c the pty is made here
 *             and the program gets the slave as controlling terminal.
 *  -c SOCKET  (with -t) listen on SOCKET and take the master that runc sends to --console-socket.
 *  -p FILE    the program (runc) exits once the real process runs; its pid is read from FILE.
 *  -w R:C     initial window size of a pty made here.
 *
 * fd 3 (to the agent), one line each: "fifos", "pid N", "exit STATUS" (STATUS = code, or 128 +
 * signal), "error MESSAGE". fd 4 (from the agent): "go", "resize ROWS COLS". fd 2: diagnostics.
 * The monitor exits after "exit" in pipe mode, and when the pty is drained (EIO/HUP) or the agent
 * closes fd 1 or fd 4 in terminal mode. Plain C and Linux syscalls, no library beyond libc, built
 * static by the guest kit (runtime-core/guest-kit/monitor.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define STATUS_FD 3
#define CTL_FD 4
#define BUF_SIZE (64 * 1024)

static pid_t main_pid = -1;   /* the process whose exit is reported */
static pid_t child_pid = -1;  /* what we forked (runc, or the program itself) */
static int exit_reported = 0;
/* exits reaped before main_pid was known (runc exec -d: the process may end before runc does) */
static struct { pid_t pid; int status; } early[64];
static int n_early = 0;
static const char *pid_file = NULL;

static void report(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  for (int off = 0; off < n;) {
    ssize_t w = write(STATUS_FD, line + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    off += w;
  }
}

static void die(const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (char *p = msg; *p; p++) if (*p == '\n') *p = ' ';
  report("error %s", msg);
  _exit(1);
}

static int status_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 255;
}

/* Read one line from fd (blocking, byte by byte: control lines are rare and short). 0 on EOF. */
static int read_line(int fd, char *buf, size_t size) {
  size_t n = 0;
  while (n + 1 < size) {
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return n > 0 ? 1 : 0;
    if (c == '\n') break;
    buf[n++] = c;
  }
  buf[n] = 0;
  return 1;
}

static void set_nonblock(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static int open_fifo(const char *dir, int n, int flags) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%d", dir, n);
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0) die("open %s: %s", path, strerror(errno));
  return fd;
}

/* Pipe mode set-up: returns the three fds the program gets (stdin, stdout, stderr). */
static void setup_fifos(const char *dir, int fds[3]) {
  char path[4096];
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%d", dir, i);
    if (mkfifo(path, 0600) < 0) die("mkfifo %s: %s", path, strerror(errno));
  }
  /* The program is the only reader of stdin: open it now (non-blocking open needs no writer). */
  fds[0] = open_fifo(dir, 0, O_RDONLY | O_NONBLOCK);
  /* Keep stdout/stderr alive (a writer exists) until the real writers are open. */
  int keep1 = open_fifo(dir, 1, O_RDWR), keep2 = open_fifo(dir, 2, O_RDWR);
  report("fifos");
  char line[64];
  if (!read_line(CTL_FD, line, sizeof line) || strcmp(line, "go") != 0) die("the agent did not send go");
  /* The agent reads stdout/stderr now, so a non-blocking write-only open succeeds. */
  fds[1] = open_fifo(dir, 1, O_WRONLY | O_NONBLOCK);
  fds[2] = open_fifo(dir, 2, O_WRONLY | O_NONBLOCK);
  for (int i = 0; i < 3; i++) set_nonblock(fds[i], 0);
  close(keep1);
  close(keep2);
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%d", dir, i);
    unlink(path);
  }
}

static int listen_console(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) die("console socket path %s is too long", path);
  strcpy(a.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket: %s", strerror(errno));
  unlink(path);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 1) < 0) die("listen on %s: %s", path, strerror(errno));
  return s;
}

/* Accept one connection on the console socket and take the fd it carries. */
static int recv_master(int lsock) {
  int c = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) die("accept on the console socket: %s", strerror(errno));
  char name[4096];
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = name, .iov_len = sizeof name - 1};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  ssize_t n = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
  close(c);
  struct cmsghdr *h = n >= 0 ? CMSG_FIRSTHDR(&m) : NULL;
  if (!h || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) die("no pty master arrived on the console socket");
  int fd;
  memcpy(&fd, CMSG_DATA(h), sizeof fd);
  return fd;
}

static void note_exit(pid_t pid, int st) {
  if (pid == main_pid) {
    if (!exit_reported) report("exit %d", status_code(st));
    exit_reported = 1;
    return;
  }
  if (pid == child_pid && main_pid < 0) {
    /* runc ended before a pid was known: it failed (its message went to the program's stderr). */
    if (status_code(st) != 0) die("%s exited with status %d", "runc", status_code(st));
    return;
  }
  if (n_early < (int)(sizeof early / sizeof early[0])) {
    early[n_early].pid = pid;
    early[n_early++].status = st;
  }
}

static void reap(void) {
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p <= 0) return;
    int was_child = p == child_pid;
    note_exit(p, st);
    if (was_child && main_pid < 0 && status_code(st) == 0) {
      /* -p: runc is done; the real process is in the pid file. */
      FILE *f = pid_file ? fopen(pid_file, "r") : NULL;
      long v = 0;
      if (!f || fscanf(f, "%ld", &v) != 1 || v <= 0) die("runc wrote no pid to %s", pid_file ? pid_file : "(none)");
      fclose(f);
      main_pid = (pid_t)v;
      report("pid %ld", v);
      for (int i = 0; i < n_early; i++)
        if (early[i].pid == main_pid) note_exit(main_pid, early[i].status);
    }
  }
}

static void resize(int master, const char *line) {
  unsigned r, c;
  if (master < 0 || sscanf(line, "resize %u %u", &r, &c) != 2) return;
  struct winsize ws = {.ws_row = (unsigned short)r, .ws_col = (unsigned short)c};
  ioctl(master, TIOCSWINSZ, &ws);
}

struct buf { char d[BUF_SIZE]; size_t off, len; };

/* Move bytes from buf to fd; -1 when fd is gone. */
static int flush(int fd, struct buf *b) {
  while (b->len > 0) {
    ssize_t w = write(fd, b->d + b->off, b->len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return 0;
    if (w <= 0) return -1;
    b->off += w;
    b->len -= w;
  }
  b->off = 0;
  return 0;
}

int main(int argc, char **argv) {
  const char *fifo_dir = NULL, *console = NULL;
  int tty = 0;
  unsigned rows = 0, cols = 0;
  int opt;
  while ((opt = getopt(argc, argv, "+f:tc:p:w:")) != -1) {
    switch (opt) {
      case 'f': fifo_dir = optarg; break;
      case 't': tty = 1; break;
      case 'c': console = optarg; break;
      case 'p': pid_file = optarg; break;
      case 'w': sscanf(optarg, "%u:%u", &rows, &cols); break;
      default: die("usage: kata-monitor [-f DIR | -t [-c SOCKET]] [-p PIDFILE] [-w R:C] -- PROGRAM ARGS...");
    }
  }
  if (optind >= argc) die("no program given");
  if (fcntl(STATUS_FD, F_GETFD) < 0 || fcntl(CTL_FD, F_GETFD) < 0) {
    fprintf(stderr, "kata-monitor: fds 3 (status) and 4 (control) must be open\n");
    return 2;
  }
  fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC);
  fcntl(CTL_FD, F_SETFD, FD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die("signalfd: %s", strerror(errno));

  int fds[3] = {-1, -1, -1};
  int master = -1, slave = -1, lsock = -1;
  if (fifo_dir) setup_fifos(fifo_dir, fds);
  else if (tty && console) lsock = listen_console(console);
  else if (tty) {
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) die("cannot allocate a pty: %s", strerror(errno));
    char *name = ptsname(master);
    slave = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
    if (slave < 0) die("cannot open the pty slave: %s", strerror(errno));
    if (rows && cols) {
      struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
      ioctl(master, TIOCSWINSZ, &ws);
    }
  }

  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
  child_pid = fork();
  if (child_pid < 0) die("fork: %s", strerror(errno));
  if (child_pid == 0) {
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    signal(SIGPIPE, SIG_DFL);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fifo_dir) {
      for (int i = 0; i < 3; i++) dup2(fds[i], i);
    } else if (slave >= 0) {
      setsid();
      ioctl(slave, TIOCSCTTY, 0);
      for (int i = 0; i < 3; i++) dup2(slave, i);
    } else {
      /* runc with a console socket: its own stdio is not the program's; errors go to our fd 2. */
      dup2(null, 0);
      dup2(null, 1);
    }
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC); /* nothing of ours leaks into the program */
    execvp(argv[optind], argv + optind);
    int e = errno;
    if (write(errpipe[1], &e, sizeof e) < 0) _exit(127);
    _exit(127);
  }
  close(errpipe[1]);
  int e;
  ssize_t n;
  while ((n = read(errpipe[0], &e, sizeof e)) < 0 && errno == EINTR) {}
  close(errpipe[0]);
  if (n == sizeof e) die("cannot run %s: %s", argv[optind], strerror(e));
  for (int i = 0; i < 3; i++) if (fds[i] >= 0) close(fds[i]);
  if (slave >= 0) close(slave);
  if (!pid_file) {
    main_pid = child_pid;
    report("pid %ld", (long)main_pid);
  }

  /* Terminal relay buffers: in = fd 0 -> master, out = master -> fd 1. */
  static struct buf in, out;
  int in_eof = !tty, out_done = !tty, ctl_open = 1, veof_pending = 0;
  if (tty) {
    set_nonblock(0, 1);
    set_nonblock(1, 1);
    if (master >= 0) set_nonblock(master, 1);
  }
  for (;;) {
    if (exit_reported && (!tty || out_done)) break;
    if (exit_reported && master < 0) break; /* the pty never arrived: nothing to relay */
    if (!ctl_open && (exit_reported || (tty && out_done))) break; /* the agent is gone */
    struct pollfd p[6];
    int np = 0, i_sig, i_ctl = -1, i_l = -1, i_in = -1, i_mr = -1, i_mw = -1, i_out = -1;
    p[i_sig = np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    if (ctl_open) p[i_ctl = np++] = (struct pollfd){.fd = CTL_FD, .events = POLLIN};
    if (lsock >= 0) p[i_l = np++] = (struct pollfd){.fd = lsock, .events = POLLIN};
    if (master >= 0) {
      short ev = 0;
      if (!out_done && out.len == 0) ev |= POLLIN;
      if (in.len > 0 || veof_pending) ev |= POLLOUT;
      if (ev) p[i_mr = i_mw = np++] = (struct pollfd){.fd = master, .events = ev};
      if (!in_eof && in.len == 0 && !veof_pending) p[i_in = np++] = (struct pollfd){.fd = 0, .events = POLLIN};
      if (out.len > 0) p[i_out = np++] = (struct pollfd){.fd = 1, .events = POLLOUT};
    }
    if (poll(p, np, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll: %s", strerror(errno));
    }
    if (p[i_sig].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
      reap();
    }
    if (i_ctl >= 0 && p[i_ctl].revents) {
      char line[128];
      if (!read_line(CTL_FD, line, sizeof line)) ctl_open = 0;
      else resize(master, line);
    }
    if (i_l >= 0 && p[i_l].revents) {
      master = recv_master(lsock);
      close(lsock);
      lsock = -1;
      set_nonblock(master, 1);
      if (console) unlink(console);
      continue;
    }
    if (i_in >= 0 && p[i_in].revents) {
      ssize_t r = read(0, in.d, sizeof in.d);
      if (r > 0) { in.off = 0; in.len = r; }
      else if (r == 0 || (errno != EAGAIN && errno != EINTR)) { in_eof = 1; veof_pending = 1; }
    }
    if (i_mw >= 0 && (p[i_mw].revents & (POLLOUT | POLLERR | POLLHUP))) {
      if (in.len > 0 && flush(master, &in) < 0) in.len = 0;
      if (in.len == 0 && veof_pending) {
        struct termios t;
        char c = tcgetattr(master, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
        if (write(master, &c, 1) == 1 || errno != EAGAIN) veof_pending = 0;
      }
    }
    if (i_mr >= 0 && (p[i_mr].revents & (POLLIN | POLLERR | POLLHUP)) && out.len == 0 && !out_done) {
      ssize_t r = read(master, out.d, sizeof out.d);
      if (r > 0) { out.off = 0; out.len = r; }
      else if (r == 0 || (errno != EAGAIN && errno != EINTR)) out_done = 1; /* EIO: every slave fd is closed */
    }
    if (out.len > 0 && flush(1, &out) < 0) { out.len = 0; out_done = 1; }
  }
  return 0;
}
