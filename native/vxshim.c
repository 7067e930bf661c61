/*
 * vxshim: the small helper that outlives the daemon for each container (and for each exec with a TTY).
 *
 *   vxshim run <runc> <runc-root> <bundle> <id> <log> <exit>
 *     Detaches, becomes a child subreaper, starts the container with `runc run -d` (stdio on pipes it
 *     holds), then writes every output line to <log> as Docker's json-file format and, when the
 *     container's init exits, its status to <exit> (written to a temp file and renamed).
 *     The daemon learns the start result from fd 3: "started <pid>\n" or "failed <rc>\n".
 *
 *   vxshim spawner
 *     Starts programs for the daemon, so the daemon never forks its own large address space (a
 *     fork copies its page tables: ~5 ms at 100 MB, on the thread that runs gossip and heartbeats).
 *     Reads "<tag>\t<path>\t<arg1>\t...\n" on stdin; runs path with those arguments in its own
 *     session, stdio on /dev/null and a pipe as fd 3; answers "<tag> <first line the program wrote
 *     on fd 3>\n" on stdout ("<tag> failed 125" if it wrote none). Exits when stdin closes.
 *
 *   vxshim pty <rows> <cols> <console-socket> <pid-file> <cmd> [args...]
 *     Runs cmd (a `runc exec -d --tty --console-socket <console-socket> --pid-file <pid-file>`),
 *     becomes the exec'd process's subreaper, receives the pty master
 *     runc made inside the container, copies stdin to it and its output to stdout, applies
 *     "<rows> <cols>\n" resize requests read from fd 3, and exits with cmd's status.
 *
 * Docker keeps a 13 MB Go shim per container; this one is a few hundred kB.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int logfd = -1;

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

/* One json-file record: {"log":"<line>","stream":"stdout","time":"<RFC3339Nano>"} */
static void log_line(const char *stream, const char *s, size_t n) {
  static char buf[65536 * 6 + 256];
  struct timespec ts;
  struct tm tm;
  size_t o = 0;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"log\":\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)c;
    } else if (c == '\n') {
      buf[o++] = '\\';
      buf[o++] = 'n';
    } else if (c < 0x20) {
      o += (size_t)snprintf(buf + o, sizeof buf - o, "\\u%04x", c);
    } else {
      buf[o++] = (char)c;
    }
  }
  o += (size_t)snprintf(buf + o, sizeof buf - o, "\",\"stream\":\"%s\",\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ\"}\n", stream,
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
  write_all(logfd, buf, o);
}

struct stream {
  int fd;
  const char *name;
  char buf[65536];
  size_t len;
};

/* Reads what is there; logs each complete line, or a full buffer, or the rest at EOF. */
static int pump(struct stream *st) {
  ssize_t r = read(st->fd, st->buf + st->len, sizeof st->buf - st->len);
  if (r < 0 && errno == EINTR) return 1;
  if (r <= 0) {
    if (st->len) log_line(st->name, st->buf, st->len);
    st->len = 0;
    close(st->fd);
    st->fd = -1;
    return 0;
  }
  st->len += (size_t)r;
  size_t start = 0;
  for (size_t i = 0; i < st->len; i++) {
    if (st->buf[i] == '\n') {
      log_line(st->name, st->buf + start, i - start + 1);
      start = i + 1;
    }
  }
  if (start == 0 && st->len == sizeof st->buf) {
    log_line(st->name, st->buf, st->len);
    start = st->len;
  }
  memmove(st->buf, st->buf + start, st->len - start);
  st->len -= start;
  return 1;
}

static void write_exit(const char *path, int status) {
  char tmp[4096];
  char text[64];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  int n = snprintf(text, sizeof text, "%d\n", code);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  write_all(fd, text, (size_t)n);
  fsync(fd);
  close(fd);
  rename(tmp, path);
}

static int cmd_run(char **argv) {
  const char *runc = argv[0], *root = argv[1], *bundle = argv[2], *id = argv[3], *logp = argv[4], *exitp = argv[5];
  int report = 3;
  char pidfile[4096], runclog[4096];
  snprintf(pidfile, sizeof pidfile, "%s/init.pid", bundle);
  snprintf(runclog, sizeof runclog, "%s/runc.log", bundle);
  setsid();
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (logfd < 0) {
    dprintf(report, "failed 125\n");
    return 1;
  }
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return 1;
  pid_t runc_pid = fork();
  if (runc_pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(report);
    execl(runc, runc, "--root", root, "--log", runclog, "--log-format", "json", "run", "-d", "--bundle", bundle, "--pid-file", pidfile, id,
          (char *)NULL);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  int st;
  while (waitpid(runc_pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    dprintf(report, "failed %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128);
    return 1;
  }
  pid_t init = 0;
  FILE *pf = fopen(pidfile, "r");
  if (pf) {
    if (fscanf(pf, "%d", &init) != 1) init = 0;
    fclose(pf);
  }
  dprintf(report, "started %d\n", init);
  close(report);
  int devnull = open("/dev/null", O_RDWR);
  dup2(devnull, 0);
  dup2(devnull, 1);
  dup2(devnull, 2);

  struct stream so = {.fd = out[0], .name = "stdout"}, se = {.fd = err[0], .name = "stderr"};
  int init_status = -1;
  for (;;) {
    /* Reap children (the container's init is ours once runc has exited: we are its subreaper). */
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
      if (p == init) init_status = st;
    }
    if (p < 0 && errno == ECHILD && init_status < 0) init_status = 0; /* init gone without us seeing it */
    if (init_status >= 0 && so.fd < 0 && se.fd < 0) break;
    struct pollfd fds[2];
    int n = 0;
    if (so.fd >= 0) fds[n++] = (struct pollfd){.fd = so.fd, .events = POLLIN};
    if (se.fd >= 0) fds[n++] = (struct pollfd){.fd = se.fd, .events = POLLIN};
    if (n == 0) {
      /* outputs closed (or redirected by the process) but init still runs: wait for it */
      pid_t w = waitpid(-1, &st, 0);
      if (w == init) init_status = st;
      continue;
    }
    int r = poll(fds, (nfds_t)n, init_status >= 0 ? 200 : 1000);
    if (r < 0) continue;
    if (r == 0 && init_status >= 0) break; /* init exited; a grandchild may hold the pipes open */
    for (int i = 0; i < n; i++) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      pump(fds[i].fd == so.fd ? &so : &se);
    }
  }
  write_exit(exitp, init_status);
  return 0;
}

/* The listening console socket runc connects to. */
static int console_listener(const char *sock_path) {
  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (ls < 0 || strlen(sock_path) >= sizeof sa.sun_path) return -1;
  strcpy(sa.sun_path, sock_path);
  unlink(sock_path);
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 1)) return -1;
  return ls;
}

/* Receives the pty master that `runc exec --tty --console-socket` sends (SCM_RIGHTS), unless runc exits first. */
static int accept_master(int ls, pid_t child) {
  for (int waited = 0; waited < 30000; waited += 100) {
    struct pollfd p = {.fd = ls, .events = POLLIN};
    if (poll(&p, 1, 100) > 0) break;
    int st;
    if (waitpid(child, &st, WNOHANG) == child) return -(WIFEXITED(st) ? WEXITSTATUS(st) : 128) - 1000;
  }
  int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) return -1;
  char dummy[256];
  struct iovec iov = {.iov_base = dummy, .iov_len = sizeof dummy};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  if (recvmsg(c, &msg, 0) < 0) return -1;
  close(c);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  if (!cm || cm->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  return fd;
}

static int cmd_pty(char **argv) {
  struct winsize ws = {.ws_row = (unsigned short)atoi(argv[0]), .ws_col = (unsigned short)atoi(argv[1])};
  const char *sock_path = argv[2], *pid_path = argv[3];
  /* runc exec -d exits once the process runs; as subreaper we inherit the process and its status. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int ls = console_listener(sock_path);
  if (ls < 0) {
    fprintf(stderr, "vxshim: console socket %s: %s\n", sock_path, strerror(errno));
    return 125;
  }
  pid_t child = fork();
  if (child < 0) return 125;
  if (child == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    execvp(argv[4], argv + 4);
    _exit(127);
  }
  int master = accept_master(ls, child);
  close(ls);
  unlink(sock_path);
  if (master <= -1000) return -(master + 1000);
  if (master < 0) {
    kill(child, SIGKILL);
    return 125;
  }
  int st = 0;
  while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return WIFEXITED(st) ? WEXITSTATUS(st) : 125;
  pid_t proc = 0;
  FILE *pf = fopen(pid_path, "r");
  if (pf) {
    if (fscanf(pf, "%d", &proc) != 1) proc = 0;
    fclose(pf);
  }
  unlink(pid_path);
  if (ws.ws_row && ws.ws_col) ioctl(master, TIOCSWINSZ, &ws);
  signal(SIGPIPE, SIG_IGN);
  int ctl = fcntl(3, F_GETFD) >= 0 ? 3 : -1;
  char buf[16384], cbuf[64];
  size_t clen = 0;
  int in_open = 1;
  for (;;) {
    struct pollfd fds[3] = {{.fd = master, .events = POLLIN}, {.fd = in_open ? 0 : -1, .events = POLLIN}, {.fd = ctl, .events = POLLIN}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = read(master, buf, sizeof buf);
      if (r <= 0) break; /* EIO: the last holder of the slave side is gone */
      write_all(1, buf, (size_t)r);
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = read(0, buf, sizeof buf);
      if (r <= 0) in_open = 0;
      else write_all(master, buf, (size_t)r);
    }
    if (ctl >= 0 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = read(ctl, cbuf + clen, sizeof cbuf - 1 - clen);
      if (r <= 0) {
        ctl = -1;
        continue;
      }
      clen += (size_t)r;
      cbuf[clen] = 0;
      char *nl;
      while ((nl = strchr(cbuf, '\n')) != NULL) {
        unsigned rows, cols;
        if (sscanf(cbuf, "%u %u", &rows, &cols) == 2) {
          struct winsize w = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
          ioctl(master, TIOCSWINSZ, &w);
        }
        size_t used = (size_t)(nl - cbuf) + 1;
        memmove(cbuf, nl + 1, clen - used + 1);
        clen -= used;
      }
      if (clen >= sizeof cbuf - 1) clen = 0;
    }
  }
  /* The process's status: ours to reap once runc has gone. */
  st = 0;
  for (;;) {
    pid_t w = waitpid(-1, &st, 0);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 || w == proc || proc == 0) break;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define SPAWN_MAX 256
struct pending {
  int fd;
  char tag[64];
  char line[256];
  size_t len;
};

static void spawn_one(char *req, struct pending *slots) {
  char *args[64];
  int n = 0;
  char *tag = strsep(&req, "\t");
  while (req && n < 63) args[n++] = strsep(&req, "\t");
  args[n] = NULL;
  if (!tag || n == 0) return;
  int slot = -1;
  for (int i = 0; i < SPAWN_MAX; i++)
    if (slots[i].fd < 0) {
      slot = i;
      break;
    }
  int rep[2];
  if (slot < 0 || pipe2(rep, O_CLOEXEC)) {
    dprintf(1, "%s failed 125\n", tag);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGCHLD, SIG_DFL); /* the program waits for its own children */
    setpriority(PRIO_PROCESS, 0, 0); /* containers run at the normal priority, not the daemon's */
    signal(SIGPIPE, SIG_DFL);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    dup2(rep[1], 3); /* dup2 clears close-on-exec on fd 3 */
    setsid();
    execv(args[0], args);
    _exit(127);
  }
  close(rep[1]);
  if (pid < 0) {
    close(rep[0]);
    dprintf(1, "%s failed 125\n", tag);
    return;
  }
  slots[slot].fd = rep[0];
  slots[slot].len = 0;
  snprintf(slots[slot].tag, sizeof slots[slot].tag, "%s", tag);
}

static int cmd_spawner(void) {
  /* children are reaped by the kernel; each resets this before exec */
  signal(SIGCHLD, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  static struct pending slots[SPAWN_MAX];
  for (int i = 0; i < SPAWN_MAX; i++) slots[i].fd = -1;
  static char in[65536];
  size_t inlen = 0;
  for (;;) {
    struct pollfd fds[SPAWN_MAX + 1];
    int map[SPAWN_MAX + 1];
    int n = 0;
    fds[n] = (struct pollfd){.fd = 0, .events = POLLIN};
    map[n++] = -1;
    for (int i = 0; i < SPAWN_MAX; i++)
      if (slots[i].fd >= 0) {
        fds[n] = (struct pollfd){.fd = slots[i].fd, .events = POLLIN};
        map[n++] = i;
      }
    if (poll(fds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    for (int k = 1; k < n; k++) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      struct pending *p = &slots[map[k]];
      ssize_t r = read(p->fd, p->line + p->len, sizeof p->line - 1 - p->len);
      if (r > 0) p->len += (size_t)r;
      char *nl = memchr(p->line, '\n', p->len);
      if (nl || r <= 0 || p->len == sizeof p->line - 1) {
        if (nl) *nl = 0;
        else p->line[p->len] = 0;
        if (nl || p->len) dprintf(1, "%s %s\n", p->tag, p->line);
        else dprintf(1, "%s failed 125\n", p->tag);
        close(p->fd);
        p->fd = -1;
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = read(0, in + inlen, sizeof in - 1 - inlen);
      if (r <= 0 && errno != EINTR) return 0; /* the daemon went away */
      if (r > 0) inlen += (size_t)r;
      char *start = in, *nl;
      while ((nl = memchr(start, '\n', inlen - (size_t)(start - in)))) {
        *nl = 0;
        spawn_one(start, slots);
        start = nl + 1;
      }
      inlen -= (size_t)(start - in);
      memmove(in, start, inlen);
      if (inlen == sizeof in - 1) inlen = 0; /* a request longer than the buffer: dropped */
    }
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "spawner") == 0) return cmd_spawner();
  if (argc >= 8 && strcmp(argv[1], "run") == 0) return cmd_run(argv + 2);
  if (argc >= 7 && strcmp(argv[1], "pty") == 0) return cmd_pty(argv + 2);
  fprintf(stderr, "usage: vxshim run <runc> <runc-root> <bundle> <id> <log> <exit>\n       vxshim spawner\n       vxshim pty <rows> <cols> <console-socket> <pid-file> <cmd> [args...]\n");
  return 2;
}
