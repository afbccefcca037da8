/*
 * kata-init: the embedded guest's PID 1 (/sbin/kata-init on the kit's rootfs). It replaces a
 * busybox sh script whose dozen busybox execs cost about 20 ms each under TCG; everything here is a
 * system call. It runs in two ways:
 *
 *  - the kernel mounted the rootfs itself (the kit's own kernel, no initramfs: root=, rootwait,
 *    init=/sbin/kata-init): nothing is mounted yet, and /dev is the image's (only /dev/console);
 *  - an initramfs (Debian's stock kernel with its modules, or a kernel or image the configuration
 *    names) mounted the rootfs, moved /dev, /proc and /sys into it and switch_root'ed here.
 *
 * It mounts what the agent and runc need (devtmpfs, proc, sysfs where not already there; tmpfs /run
 * and /tmp, devpts, /dev/shm, /dev/mqueue, cgroup2 with every controller enabled for the subtree),
 * makes the /dev/fd and std* links, names the host kata-guest, brings lo up, then runs the agent
 * (AGENT_ARGV, given by the kit's build) with a fixed environment, starting it again a second after
 * it dies. As PID 1 it reaps every orphan reparented to it; the agent's containers do not reach it
 * (each process runs under kata-monitor, a subreaper). Failures are said on /dev/console and do not
 * stop the boot: the agent reports what it then cannot do, and an agent that cannot start is tried
 * again every second. With `debug` on the kernel command line (enable_debug) it also says the uptime
 * at which it started the agent.
 *
 * With `kata.sharefs=TAG:MOUNTPOINT` (the host's virtio-fs share, from the same Storage the
 * host then sends in AddStorages: runtime-core/guest-kit/share-param.ts) it mounts the share itself,
 * type virtiofs, before the agent starts: a mount(2) here instead of a `mount` process the agent
 * runs (0.1-0.15 s under TCG). The agent's AddStorages then finds it mounted and returns. A value
 * that does not parse, or a mount that fails, is said on the console and left to the agent.
 *
 * The agent's virtio-serial port (AGENT_PORT, found by name in /sys/class/virtio-ports) is opened
 * here, before node starts, and served at once by the early agent (early-agent.c, a child of this
 * process: no exec): it answers the host's Check and Exec while node starts, then hands the port
 * over. Node's agent gets the port as fd 3, the handover pipe as fd 4 and its readiness pipe as fd
 * 5 (KATA_AGENT_FDS=3,4,5), and runs at nice 19 until it has taken the port over, so that its
 * start does not slow the early agent's answers down on the guest's one vCPU (it raises its own
 * priority then: guest/agent/main.ts). A restarted agent gets the port alone (KATA_AGENT_FDS=3).
 * Without the port in time, node's agent finds it itself, as before.
 *
 * Plain C and Linux syscalls, built static by the guest kit (runtime-core/guest-kit/init.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "early-agent.h"

#ifndef AGENT_ARGV
#error "AGENT_ARGV (the agent's command, as C string literals separated by commas) is given by the build"
#endif
#ifndef AGENT_PORT
#error "AGENT_PORT (the name of the agent's virtio-serial port, a C string literal) is given by the build"
#endif

static char *const agent_argv[] = {AGENT_ARGV, NULL};
static int console_fd = -1;

static void say(const char *fmt, ...) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "kata-init: ");
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  va_end(ap);
  n = m < 0 ? n : (n + m < (int)sizeof buf - 1 ? n + m : (int)sizeof buf - 2);
  buf[n++] = '\n';
  if (write(console_fd >= 0 ? console_fd : 2, buf, (size_t)n) < 0) { /* nowhere else to say it */ }
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  if (mkdir(dst, 0755) < 0 && errno != EEXIST) say("mkdir %s: %s", dst, strerror(errno));
  if (mount(src, dst, type, flags, data) < 0) say("cannot mount %s on %s: %s", type, dst, strerror(errno));
}

static int present(const char *path) { return access(path, F_OK) == 0; }

/* /dev/console as fds 0, 1 and 2 when the kernel could not open it (no /dev/console on the root). */
static void console(void) {
  console_fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (console_fd < 0) return;
  for (int fd = 0; fd <= 2; fd++)
    if (fcntl(fd, F_GETFD) < 0) dup2(console_fd, fd);
}

static void link_fd(const char *target, const char *path) {
  if (symlink(target, path) < 0 && errno != EEXIST) say("symlink %s: %s", path, strerror(errno));
}

/* Every controller the root cgroup offers, enabled for its children (runc puts containers there). */
static void cgroup_controllers(void) {
  char buf[512];
  int fd = open("/sys/fs/cgroup/cgroup.controllers", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    say("cannot read cgroup.controllers: %s", strerror(errno));
    return;
  }
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = 0;
  int ctl = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
  if (ctl < 0) {
    say("cannot open cgroup.subtree_control: %s", strerror(errno));
    return;
  }
  char *save = NULL;
  for (char *c = strtok_r(buf, " \n", &save); c; c = strtok_r(NULL, " \n", &save)) {
    char w[64];
    int len = snprintf(w, sizeof w, "+%s", c);
    /* one write each: a controller the kernel refuses must not keep the others off (as before) */
    if (len > 0 && len < (int)sizeof w && write(ctl, w, (size_t)len) < 0 && errno != EBUSY)
      say("cgroup controller %s: %s", c, strerror(errno));
  }
  close(ctl);
}

static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    say("socket: %s", strerror(errno));
    return;
  }
  struct ifreq r;
  memset(&r, 0, sizeof r);
  strcpy(r.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &r) < 0) {
    say("lo: SIOCGIFFLAGS: %s", strerror(errno));
  } else {
    r.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &r) < 0) say("lo: SIOCSIFFLAGS: %s", strerror(errno));
  }
  close(s);
}

/* The kernel's parameters, NUL-terminated. */
static char cmdline[4096];

/* Whether `word` is one of the kernel's parameters. */
static int cmdline_has(const char *word) {
  size_t len = strlen(word);
  for (const char *p = cmdline; (p = strstr(p, word)) != NULL; p += len)
    if ((p == cmdline || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\n' || p[len] == 0)) return 1;
  return 0;
}

static void read_cmdline(void) {
  int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
  close(fd);
  cmdline[n > 0 ? n : 0] = 0;
}

/* The guest's uptime as /proc/uptime says it ("1.23"), for the boot timeline with `debug`. */
static const char *uptime(char *buf, size_t size) {
  int fd = open("/proc/uptime", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);
  if (fd >= 0) close(fd);
  buf[n > 0 ? n : 0] = 0;
  buf[strcspn(buf, " ")] = 0;
  return buf;
}

/*
 * The value of parameter `name` ("kata.sharefs=") copied into buf, or NULL when it is not there or
 * does not fit.
 */
static char *cmdline_value(const char *name, char *buf, size_t size) {
  size_t len = strlen(name);
  for (const char *p = cmdline; (p = strstr(p, name)) != NULL; p += len) {
    if (p != cmdline && p[-1] != ' ') continue;
    const char *v = p + len;
    size_t n = strcspn(v, " \n");
    if (n >= size) return NULL;
    memcpy(buf, v, n);
    buf[n] = 0;
    return buf;
  }
  return NULL;
}

/* mkdir -p for an absolute path. */
static int mkdirs(const char *path) {
  char p[512];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof p) return -1;
  memcpy(p, path, n + 1);
  for (char *c = p + 1; *c; c++) {
    if (*c != '/') continue;
    *c = 0;
    if (mkdir(p, 0755) < 0 && errno != EEXIST) return -1;
    *c = '/';
  }
  return mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* Whether absolute path `p` has a ".." component. */
static int has_dotdot(const char *p) {
  for (const char *c = p; (c = strstr(c, "/..")) != NULL; c += 3)
    if (c[3] == '/' || c[3] == 0) return 1;
  return 0;
}

/* What kata.sharefs= gave, once mounted (the early agent's Check says it). */
static char share_mounted[600];

/*
 * kata.sharefs=TAG:MOUNTPOINT: TAG 1-36 characters of [A-Za-z0-9._-] (virtio-fs tags are at most
 * 36 bytes), MOUNTPOINT absolute, without ':' or "..". No options: the host writes the parameter only
 * for a share without any (runtime-core/guest-kit/share-param.ts checks the same rules).
 */
static void mount_share(void) {
  char v[600];
  if (!cmdline_value("kata.sharefs=", v, sizeof v)) return;
  char *tag = v, *mp = strchr(v, ':');
  if (!mp) {
    say("kata.sharefs=%s: expected TAG:MOUNTPOINT; the agent mounts the share", v);
    return;
  }
  *mp++ = 0;
  size_t tl = strlen(tag);
  int ok = tl >= 1 && tl <= 36 && strspn(tag, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == tl;
  ok = ok && mp[0] == '/' && strchr(mp, ':') == NULL && !has_dotdot(mp);
  if (!ok) {
    say("kata.sharefs: tag \"%s\" or mount point \"%s\" is not valid; the agent mounts the share", tag, mp);
    return;
  }
  if (mkdirs(mp) < 0) {
    say("kata.sharefs: mkdir %s: %s; the agent mounts the share", mp, strerror(errno));
    return;
  }
  if (mount(tag, mp, "virtiofs", 0, NULL) < 0) {
    say("kata.sharefs: cannot mount virtiofs %s on %s: %s; the agent mounts the share", tag, mp, strerror(errno));
    return;
  }
  snprintf(share_mounted, sizeof share_mounted, "%s:%s", tag, mp);
  if (cmdline_has("debug")) {
    char up[64];
    say("virtio-fs %s mounted on %s (uptime %s s)", tag, mp, uptime(up, sizeof up));
  }
}

/* The agent's port: /dev/vportNpM whose sysfs name is AGENT_PORT, opened; -1 when it is not there. */
static int open_port(void) {
  DIR *d = opendir("/sys/class/virtio-ports");
  if (!d) return -1;
  int fd = -1;
  for (struct dirent *e; fd < 0 && (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    char path[300], name[64];
    snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
    int nf = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = nf < 0 ? -1 : read(nf, name, sizeof name - 1);
    if (nf >= 0) close(nf);
    if (n <= 0) continue;
    name[n] = 0;
    name[strcspn(name, "\n")] = 0;
    if (strcmp(name, AGENT_PORT) != 0) continue;
    snprintf(path, sizeof path, "/dev/%s", e->d_name);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      say("cannot open %s: %s; the agent opens its port itself", path, strerror(errno));
      break;
    }
    /* as udev would (node's agent made it when it searched the port itself) */
    char link[300];
    snprintf(link, sizeof link, "../%s", e->d_name);
    if (mkdir("/dev/virtio-ports", 0755) == 0 || errno == EEXIST) link_fd(link, "/dev/virtio-ports/" AGENT_PORT);
  }
  closedir(d);
  return fd;
}

/* The port, waiting up to a second for the driver to list it (it is there by the time init runs). */
static int wait_port(void) {
  for (int i = 0; i < 200; i++) {
    int fd = open_port();
    if (fd >= 0) return fd;
    usleep(5000);
  }
  say("no virtio-serial port named %s yet; the agent waits for it itself", AGENT_PORT);
  return -1;
}

/* fd moved to `to` in the agent's process (dup2 clears close-on-exec). */
static void give(int fd, int to) {
  if (fd >= 0 && dup2(fd, to) < 0) say("dup2: %s", strerror(errno));
}

/*
 * Starts node's agent. With the port: as fd 3; with a handover (the early agent runs): its pipes as
 * fds 4 (read) and 5 (write), and at nice 19 until the agent has taken the port over.
 */
static pid_t start_agent(char *const envp[], const sigset_t *old, int port, int handover_r, int ready_w) {
  pid_t pid = fork();
  if (pid < 0) {
    say("fork: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, old, NULL);
    /* above every fd given below, so that no dup2 overwrites another's source */
    int p = port >= 0 ? fcntl(port, F_DUPFD_CLOEXEC, 10) : -1;
    int h = handover_r >= 0 ? fcntl(handover_r, F_DUPFD_CLOEXEC, 10) : -1;
    int r = ready_w >= 0 ? fcntl(ready_w, F_DUPFD_CLOEXEC, 10) : -1;
    give(p, 3);
    give(h, 4);
    give(r, 5);
    char fds[40] = "KATA_AGENT_FDS=";
    if (p >= 0) strcat(fds, h >= 0 && r >= 0 ? "3,4,5" : "3");
    char *env[16];
    int n = 0;
    for (int i = 0; envp[i] && n < 14; i++) env[n++] = envp[i];
    if (p >= 0) env[n++] = fds;
    env[n] = NULL;
    if (h >= 0 && setpriority(PRIO_PROCESS, 0, 19) < 0) say("setpriority: %s", strerror(errno));
    execve(agent_argv[0], agent_argv, env);
    say("cannot run %s: %s", agent_argv[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

/* The early agent on the port, in a child of this process; its pid, or -1. */
static pid_t start_early(int port, int ready_r, int handover_w, char *const envp[]) {
  pid_t pid = fork();
  if (pid < 0) say("fork: %s", strerror(errno));
  if (pid == 0) early_agent(port, ready_r, handover_w, envp, share_mounted);
  return pid;
}

int main(void) {
  if (getpid() != 1) {
    fprintf(stderr, "kata-init: the guest's init, not to be run as pid %d\n", (int)getpid());
    return 2;
  }
  const unsigned long nosuid_nodev = MS_NOSUID | MS_NODEV;
  if (!present("/dev/null")) mnt("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  console();
  if (!present("/proc/self")) mnt("proc", "/proc", "proc", nosuid_nodev | MS_NOEXEC, NULL);
  if (!present("/sys/kernel")) mnt("sysfs", "/sys", "sysfs", nosuid_nodev | MS_NOEXEC, NULL);
  mnt("tmpfs", "/run", "tmpfs", nosuid_nodev, "mode=0755");
  mnt("tmpfs", "/tmp", "tmpfs", nosuid_nodev, "mode=1777");
  mnt("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666");
  mnt("shm", "/dev/shm", "tmpfs", nosuid_nodev, "mode=1777");
  mnt("mqueue", "/dev/mqueue", "mqueue", nosuid_nodev | MS_NOEXEC, NULL);
  link_fd("/proc/self/fd", "/dev/fd");
  link_fd("/proc/self/fd/0", "/dev/stdin");
  link_fd("/proc/self/fd/1", "/dev/stdout");
  link_fd("/proc/self/fd/2", "/dev/stderr");
  mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid_nodev | MS_NOEXEC, "nsdelegate");
  cgroup_controllers();
  if (sethostname("kata-guest", 10) < 0) say("sethostname: %s", strerror(errno));
  loopback_up();

  read_cmdline();
  mount_share();
  char *envp[] = {
      "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME=/root",
      "TERM=linux",
      "KATA_AGENT_GUEST=1",
      cmdline_has("kata.debug=1") ? "KATA_AGENT_LOG=debug" : NULL,
      NULL,
  };
  if (chdir("/") < 0) say("chdir /: %s", strerror(errno));

  /* SIGCHLD blocked: waitpid below collects every child, the agent and orphans alike. */
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  int port = wait_port();
  int handover[2] = {-1, -1}, ready[2] = {-1, -1};
  pid_t early = -1;
  if (port >= 0 && pipe2(handover, O_CLOEXEC) == 0 && pipe2(ready, O_CLOEXEC) == 0) early = start_early(port, ready[0], handover[1], envp);
  pid_t agent = early > 0 ? start_agent(envp, &old, port, handover[0], ready[1]) : start_agent(envp, &old, port, -1, -1);
  for (int i = 0; i < 2; i++) {
    if (handover[i] >= 0) close(handover[i]);
    if (ready[i] >= 0) close(ready[i]);
  }
  if (cmdline_has("debug")) {
    char up[64];
    say("%sagent started (uptime %s s)", early > 0 ? "early agent serving, " : "", uptime(up, sizeof up));
  }
  for (;;) {
    int status;
    pid_t pid = agent > 0 ? waitpid(-1, &status, 0) : -1;
    if (pid < 0 && errno == EINTR) continue;
    if (pid > 0 && pid == early) early = -1;
    if (pid > 0 && pid != agent) continue; /* the early agent, done, or an orphan: reaped */
    if (pid == agent) {
      if (WIFEXITED(status))
        say("agent exited with status %d; restarting", WEXITSTATUS(status));
      else
        say("agent killed by signal %d; restarting", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    if (early > 0) {
      /* it would hand over to the agent that died: the next one serves the port alone */
      kill(early, SIGKILL);
      while (waitpid(early, NULL, 0) < 0 && errno == EINTR) {}
      early = -1;
    }
    sleep(1);
    agent = start_agent(envp, &old, port, -1, -1);
  }
}
