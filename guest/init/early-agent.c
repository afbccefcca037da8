/*
 * The early agent: kata-init's answer to the host while node's agent is still starting. Under TCG
 * node needs 0.6-1.1 s from its exec to serving, and the host's boot-time requests (interfaces,
 * routes, neighbours, the share) waited for it: most of what separated `sandbox up` from a bare
 * kernel boot. Kata's agent is a native binary; ours is node, so this small native part serves the
 * two calls the host's boot needs, on the same virtio-serial port, in the same line protocol
 * (guest/agent/protocol.ts):
 *
 *   Check  {"status":"SERVING","early":true,"sharefs":"TAG:MOUNTPOINT"}: the host then applies the
 *          sandbox through Exec (runtime-core/sandbox/apply-through-exec.ts runs the agent's own
 *          network code with an `ip` that runs here), instead of waiting for UpdateInterface & co.
 *          sharefs: the virtio-fs share kata-init mounted (kata.sharefs=), absent when none.
 *   Exec   as node's agent runs it (guest/agent/server.ts, runner.ts): argv by PATH, input on stdin
 *          (else /dev/null), env added to the agent's, cwd "/" by default, SIGKILL at timeoutMs
 *          (default 30 s), 4 MiB of each of stdout and stderr, 128+N for signal N, E_EXEC when it
 *          cannot be started.
 *
 * Anything else, and anything it does not fully understand (a malformed line, a field of the wrong
 * type), it does not answer: it hands over. So does node's agent's readiness (a byte, or EOF, on
 * `ready_fd`), checked before each request: requests run one at a time here (an Exec that runs
 * long holds the next ones back until it ends), side by side in node's agent. Handing over is: finish the request in hand, write every byte read from the port and
 * not yet answered to `handover_fd`, close it, exit. Node's agent reads that pipe to its end, then
 * serves the port from there (guest/agent/transport.ts), so no request is lost or answered twice,
 * and every error message stays node's. Requests are answered one at a time, in order.
 *
 * Plain C, no allocation failure handling beyond exiting (kata-init then leaves the port to node).
 */
#define _GNU_SOURCE
#include "early-agent.h"
#include "early-json.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_OUTPUT (4u << 20)   /* runner.ts's cap for each of stdout and stderr */
#define MAX_LINE (4u << 20)     /* longer requests are not this agent's: handed over */
#define MAX_TIMEOUT_MS 86400000 /* server.ts MAX_EXEC_TIMEOUT_MS */
#define MAX_ARGS 256
#define MAX_ENV 256

struct request {
  char id[32]; /* as sent: digits (the host's ids), or a short string with its quotes */
  char method[32];
  const char *params; /* where params' value starts; NULL when absent */
};

static int request_member(const char *key, struct js *j, void *ctx) {
  struct request *r = ctx;
  json_ws(j);
  if (strcmp(key, "id") == 0) {
    const char *s = j->p;
    struct buf b = {0};
    double d;
    int ok = *s == '"' ? json_str(j, &b) : json_num(j, &d);
    free(b.p);
    size_t n = (size_t)(j->p - s);
    /* echoed as sent, so only what node would write back the same: 0, 42, "abc" (no escapes) */
    int plain = *s == '"' ? memchr(s, '\\', n) == NULL : strspn(s, "0123456789") == n && (n == 1 || *s != '0');
    if (ok < 0 || n >= sizeof r->id || !plain) return -1;
    memcpy(r->id, s, n);
    r->id[n] = 0;
    return 0;
  }
  if (strcmp(key, "method") == 0) {
    char *m = json_cstr(j);
    if (!m || strlen(m) >= sizeof r->method) {
      free(m);
      return -1;
    }
    strcpy(r->method, m);
    free(m);
    return 0;
  }
  if (strcmp(key, "params") == 0) r->params = j->p;
  return json_skip(j, 0);
}

struct exec {
  char *argv[MAX_ARGS + 1];
  int argc;
  char *env[MAX_ENV + 1];
  int envc;
  char *cwd;
  struct buf input;
  int has_input;
  double timeout_ms;
};

static int env_member(const char *key, struct js *j, void *ctx) {
  struct exec *e = ctx;
  char *v = json_cstr(j);
  if (!v || e->envc >= MAX_ENV || !*key || strchr(key, '=')) {
    free(v);
    return -1;
  }
  struct buf kv = {0};
  buf_puts(&kv, key);
  buf_puts(&kv, "=");
  buf_puts(&kv, v);
  free(v);
  e->env[e->envc++] = kv.p;
  return 0;
}

static int exec_member(const char *key, struct js *j, void *ctx) {
  struct exec *e = ctx;
  if (strcmp(key, "argv") == 0) {
    if (!json_eat(j, '[') || e->argc) return -1;
    if (json_eat(j, ']')) return -1;
    do {
      char *a = json_cstr(j);
      if (!a || e->argc >= MAX_ARGS) {
        free(a);
        return -1;
      }
      e->argv[e->argc++] = a;
    } while (json_eat(j, ','));
    return json_eat(j, ']') && e->argv[0][0] ? 0 : -1;
  }
  if (strcmp(key, "timeoutMs") == 0) return json_num(j, &e->timeout_ms);
  if (strcmp(key, "cwd") == 0) return e->cwd || !(e->cwd = json_cstr(j)) ? -1 : 0;
  if (strcmp(key, "input") == 0) {
    e->has_input = 1;
    return json_str(j, &e->input);
  }
  if (strcmp(key, "env") == 0) return json_object(j, env_member, e);
  return json_skip(j, 0);
}

static void exec_free(struct exec *e) {
  for (int i = 0; i < e->argc; i++) free(e->argv[i]);
  for (int i = 0; i < e->envc; i++) free(e->env[i]);
  free(e->cwd);
  free(e->input.p);
}

/* Writes the line {"id":ID,BODY} to the port (BODY: "result":... or "error":...), and frees body. */
static void answer(int port, const char *id, struct buf *body) {
  struct buf line = {0};
  buf_puts(&line, "{\"id\":");
  buf_puts(&line, id);
  buf_puts(&line, ",");
  buf_put(&line, body->p, body->n);
  buf_puts(&line, "}\n");
  free(body->p);
  for (size_t off = 0; off < line.n;) {
    ssize_t w = write(port, line.p + off, line.n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(71); /* the port is gone: node's agent takes over (kata-init restarts it) */
    off += (size_t)w;
  }
  free(line.p);
}

/* ---- Exec ---- */

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void drain(int *fd, struct buf *b, int *truncated) {
  char tmp[65536];
  ssize_t n = read(*fd, tmp, sizeof tmp);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    close(*fd);
    *fd = -1;
    return;
  }
  size_t room = b->n < MAX_OUTPUT ? MAX_OUTPUT - b->n : 0;
  if ((size_t)n > room) *truncated = 1;
  buf_put(b, tmp, (size_t)n < room ? (size_t)n : room);
}

static char **merged_env(char *const base[], struct exec *e) {
  size_t nb = 0;
  while (base[nb]) nb++;
  char **env = calloc(nb + (size_t)e->envc + 1, sizeof *env);
  if (!env) _exit(70);
  size_t n = 0;
  for (size_t i = 0; i < nb; i++) {
    size_t klen = strcspn(base[i], "=") + 1;
    int overridden = 0;
    for (int k = 0; k < e->envc; k++) overridden |= strncmp(base[i], e->env[k], klen) == 0;
    if (!overridden) env[n++] = base[i];
  }
  for (int k = 0; k < e->envc; k++) env[n++] = e->env[k];
  return env;
}

static void run(int port, const char *id, struct exec *e, char *const base_env[]) {
  int out[2], err[2], in[2] = {-1, -1}, fail[2];
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(fail, O_CLOEXEC) < 0 || (e->has_input && pipe2(in, O_CLOEXEC) < 0))
    _exit(72);
  char **env = merged_env(base_env, e);
  pid_t pid = fork();
  if (pid < 0) _exit(73);
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int stdin_fd = e->has_input ? in[0] : open("/dev/null", O_RDONLY);
    dup2(stdin_fd, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    /*
     * Without address-space randomisation, ip and its libraries sit where the last run had them,
     * and QEMU's TCG reuses that run's translations: 7-9 ms an `ip` instead of 27-32 ms in a TCG
     * guest. Only the early agent's commands; node's agent's and the containers' keep it.
     */
    personality(ADDR_NO_RANDOMIZE);
    /* execvp searches the PATH of environ: the command's own, as node's spawn does */
    environ = env;
    if (chdir(e->cwd ? e->cwd : "/") == 0) execvp(e->argv[0], e->argv);
    int why = errno;
    if (write(fail[1], &why, sizeof why) < 0) { /* the parent then sees exit status 127 */ }
    _exit(127);
  }
  free(env);
  close(out[1]);
  close(err[1]);
  close(fail[1]);
  if (e->has_input) close(in[0]);
  int why = 0;
  ssize_t got = read(fail[0], &why, sizeof why);
  close(fail[0]);
  struct buf body = {0};
  if (got == (ssize_t)sizeof why) {
    if (e->has_input) close(in[1]);
    close(out[0]);
    close(err[0]);
    waitpid(pid, NULL, 0);
    char msg[600];
    snprintf(msg, sizeof msg, "cannot run %s: %s: spawn %s %s", e->argv[0], e->argv[0], e->argv[0], strerrorname_np(why) ? strerrorname_np(why) : strerror(why));
    buf_puts(&body, "\"error\":{\"code\":\"E_EXEC\",\"message\":");
    json_quote(&body, (const unsigned char *)msg, strlen(msg));
    buf_puts(&body, "}");
    answer(port, id, &body);
    return;
  }
  struct buf so = {0}, se = {0};
  int truncated = 0, timed_out = 0;
  size_t in_off = 0;
  int ofd = out[0], efd = err[0], ifd = e->has_input ? in[1] : -1;
  if (ifd >= 0) fcntl(ifd, F_SETFL, O_NONBLOCK);
  if (ifd >= 0 && e->input.n == 0) close(ifd), ifd = -1;
  long long deadline = now_ms() + (long long)e->timeout_ms;
  while (ofd >= 0 || efd >= 0) {
    struct pollfd p[3] = {{ofd, POLLIN, 0}, {efd, POLLIN, 0}, {ifd, POLLOUT, 0}};
    long long left = deadline - now_ms();
    int ms = timed_out ? -1 : left > 0 ? (int)(left < 1000000 ? left : 1000000) : 0;
    int r = poll(p, 3, ms);
    if (r < 0 && errno != EINTR) _exit(74);
    if (r == 0 && !timed_out) {
      kill(pid, SIGKILL);
      timed_out = 1;
      continue;
    }
    if (ofd >= 0 && p[0].revents) drain(&ofd, &so, &truncated);
    if (efd >= 0 && p[1].revents) drain(&efd, &se, &truncated);
    if (ifd >= 0 && p[2].revents) {
      ssize_t w = p[2].revents & POLLOUT ? write(ifd, e->input.p + in_off, e->input.n - in_off) : -1;
      if (w > 0) in_off += (size_t)w;
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == e->input.n) close(ifd), ifd = -1;
    }
  }
  if (ifd >= 0) close(ifd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  char head[96];
  snprintf(head, sizeof head, "\"result\":{\"exitCode\":%d,\"stdout\":", code);
  buf_puts(&body, head);
  json_quote(&body, (const unsigned char *)(so.p ? so.p : ""), so.n);
  buf_puts(&body, ",\"stderr\":");
  json_quote(&body, (const unsigned char *)(se.p ? se.p : ""), se.n);
  buf_puts(&body, timed_out ? ",\"timedOut\":true" : ",\"timedOut\":false");
  buf_puts(&body, truncated ? ",\"truncated\":true}" : ",\"truncated\":false}");
  answer(port, id, &body);
  free(so.p);
  free(se.p);
}

/* The kata.sharefs= value kata-init mounted, "" when none (early_agent's argument). */
static const char *share_mounted = "";

/* Answers one request line; 0 when it is not this agent's to answer. */
static int serve_line(int port, const char *s, size_t n, char *const env[]) {
  struct request r = {0};
  struct js j = {s, s + n};
  if (json_object(&j, request_member, &r) < 0 || (json_ws(&j), j.p != j.end) || !r.id[0]) return 0;
  if (strcmp(r.method, "Check") == 0 && (!r.params || *r.params == '{')) {
    struct buf body = {0};
    buf_puts(&body, "\"result\":{\"status\":\"SERVING\",\"early\":true");
    if (*share_mounted) {
      buf_puts(&body, ",\"sharefs\":");
      json_quote(&body, (const unsigned char *)share_mounted, strlen(share_mounted));
    }
    buf_puts(&body, "}");
    answer(port, r.id, &body);
    return 1;
  }
  if (strcmp(r.method, "Exec") != 0 || !r.params) return 0;
  struct exec e = {.timeout_ms = 30000};
  struct js pj = {r.params, s + n};
  int ok = json_object(&pj, exec_member, &e) == 0 && e.argc > 0 && e.timeout_ms > 0 && e.timeout_ms <= MAX_TIMEOUT_MS;
  if (ok) run(port, r.id, &e, env);
  exec_free(&e);
  return ok;
}

static void hand_over(int handover_fd, const char *p, size_t n) {
  for (size_t off = 0; off < n;) {
    ssize_t w = write(handover_fd, p + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break; /* node's agent is gone: kata-init starts a new one on the port */
    off += (size_t)w;
  }
  _exit(0);
}

void early_agent(int port, int ready_fd, int handover_fd, char *const env[], const char *sharefs) {
  share_mounted = sharefs ? sharefs : "";
  signal(SIGPIPE, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  struct buf in = {0};
  for (;;) {
    size_t off = 0;
    char *nl;
    while (in.n > off && (nl = memchr(in.p + off, '\n', in.n - off)) != NULL) {
      /* node's agent, once ready, takes every request not begun yet: its Exec runs them side by side */
      struct pollfd r = {ready_fd, POLLIN, 0};
      if (poll(&r, 1, 0) > 0) hand_over(handover_fd, in.p + off, in.n - off);
      size_t len = (size_t)(nl - (in.p + off));
      size_t tlen = len > 0 && in.p[off + len - 1] == '\r' ? len - 1 : len;
      if (strspn(in.p + off, " \t\r") < tlen && !serve_line(port, in.p + off, tlen, env)) hand_over(handover_fd, in.p + off, in.n - off);
      off += len + 1;
    }
    if (off) {
      memmove(in.p, in.p + off, in.n - off);
      in.n -= off;
    }
    if (in.n > MAX_LINE) hand_over(handover_fd, in.p, in.n);
    struct pollfd p[2] = {{port, POLLIN, 0}, {ready_fd, POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) hand_over(handover_fd, in.p, in.n);
    if (p[1].revents) hand_over(handover_fd, in.p, in.n);
    if (!p[0].revents) continue;
    char tmp[65536];
    ssize_t got = p[0].revents & POLLIN ? read(port, tmp, sizeof tmp) : 0;
    if (got > 0) {
      buf_put(&in, tmp, (size_t)got);
    } else if (got < 0 && errno != EINTR && errno != EAGAIN) {
      hand_over(handover_fd, in.p, in.n);
    } else if (got == 0) {
      /* no host on the port (virtio_console reads 0 then): look again in 10 ms, or on node's readiness */
      struct pollfd r = {ready_fd, POLLIN, 0};
      if (poll(&r, 1, 10) > 0) hand_over(handover_fd, in.p, in.n);
    }
  }
}

#ifdef EARLY_AGENT_STANDALONE
/* For host tests: the port is fd 0, node's readiness fd 3, the handover fd 4. */
int main(void) {
  early_agent(0, 3, 4, environ, getenv("EARLY_AGENT_SHAREFS"));
  return 0;
}
#endif
