/*
 * loadgen: the neutral load generator of geartrain's benchmark (bench/run.py builds and drives it).
 *
 * One binary, built on libgearman, drives the C gearmand and geartrain alike, so the two servers
 * see exactly the same clients and workers. Modes (each prints one JSON line on stdout when done):
 *
 *   loadgen client  -H host -p port -f func -n jobs -k inflight -s size [-b] [-w warmup] [-L]
 *       submits `jobs` jobs (foreground, or background with -b, each with its own unique), keeping
 *       `inflight` outstanding; -L records every round trip and reports p50/p99/max in microseconds.
 *   loadgen worker  -H host -p port -f func -t threads [-n total]
 *       `threads` libgearman workers (one connection each) that echo the workload back; with -n they
 *       all stop once `total` jobs were done between them (otherwise they run until SIGTERM).
 *   -R (client and worker): plain sockets instead of libgearman (see the raw section below).
 *   loadgen idle    -H host -p port -f func -c conns
 *       opens `conns` raw sockets that send CAN_DO func + PRE_SLEEP and then sit idle; prints
 *       {"ready": conns} once the server answered on every one, then waits until stdin closes.
 */
#define _GNU_SOURCE
#include <libgearman-1.0/gearman.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct opts {
  const char *host;
  in_port_t port;
  const char *func;
  long jobs;
  long inflight;
  long size;
  long threads;
  long conns;
  long warmup;
  int background;
  int latency;
  int raw;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "loadgen: %s: %s\n", what, detail ? detail : "");
  printf("{\"error\": \"%s\"}\n", what);
  fflush(stdout);
  exit(1);
}

/* ------------------------------------------------------------------ client */

struct client_run {
  gearman_client_st *client;
  const struct opts *o;
  char *payload;
  long total;     /* jobs to complete in this phase */
  long submitted;
  long done;
  long failed;
  double *started; /* per job, for -L */
  double *rtt;     /* completed round trips (seconds) */
  long nrtt;
};

static int submit_one(struct client_run *r);

/* Each job in flight occupies a slot (the task's context): when it finishes, its slot's start time
 * gives the round trip and the next job takes the same slot, so bookkeeping is O(1) per job. */
struct slot {
  struct client_run *run;
  double t0;
};

static struct slot *slots;

static gearman_return_t on_complete(gearman_task_st *task) {
  struct slot *s = (struct slot *)gearman_task_context(task);
  struct client_run *r = s->run;
  if (gearman_task_return(task) == GEARMAN_SUCCESS && r->o->size > 0 && !r->o->background) {
    /* echo worker: the result must come back whole */
    if (gearman_task_data_size(task) != (size_t)r->o->size) {
      r->failed++;
      goto next;
    }
  }
  r->done++;
  if (r->rtt) r->rtt[r->nrtt++] = now() - s->t0;
next:
  if (r->submitted < r->total) {
    s->t0 = now();
    submit_one(r);
  }
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_fail(gearman_task_st *task) {
  struct slot *s = (struct slot *)gearman_task_context(task);
  struct client_run *r = s->run;
  r->failed++;
  if (r->submitted < r->total) {
    s->t0 = now();
    submit_one(r);
  }
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_created(gearman_task_st *task) {
  /* background jobs are finished once the server said JOB_CREATED */
  return on_complete(task);
}

static struct slot *current_slot;

static int submit_one(struct client_run *r) {
  gearman_return_t ret;
  char unique[64];
  const char *u = NULL;
  if (r->o->background) {
    static long seq;
    snprintf(unique, sizeof unique, "lg-%d-%ld", (int)getpid(), seq++);
    u = unique;
  }
  gearman_task_st *t;
  if (r->o->background) {
    t = gearman_client_add_task_background(r->client, NULL, current_slot, r->o->func, u, r->payload,
                                           (size_t)r->o->size, &ret);
  } else {
    t = gearman_client_add_task(r->client, NULL, current_slot, r->o->func, u, r->payload,
                                (size_t)r->o->size, &ret);
  }
  if (t == NULL || ret != GEARMAN_SUCCESS) {
    die("add_task failed", gearman_client_error(r->client));
  }
  r->submitted++;
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void client_phase(struct client_run *r, long total, long inflight) {
  r->total = total;
  r->submitted = 0;
  r->done = 0;
  r->failed = 0;
  r->nrtt = 0;
  if (inflight > total) inflight = total;
  for (long i = 0; i < inflight; i++) {
    slots[i].run = r;
    slots[i].t0 = now();
    current_slot = &slots[i];
    submit_one(r);
  }
  gearman_return_t ret = gearman_client_run_tasks(r->client);
  if (ret != GEARMAN_SUCCESS) {
    die("run_tasks failed", gearman_client_error(r->client));
  }
}

/* Callbacks need to know which slot a new task takes: it is the slot of the task that just
 * finished, so the callbacks set current_slot before submitting. */
static gearman_return_t cb_complete(gearman_task_st *task) {
  current_slot = (struct slot *)gearman_task_context(task);
  return on_complete(task);
}

static gearman_return_t cb_fail(gearman_task_st *task) {
  current_slot = (struct slot *)gearman_task_context(task);
  return on_fail(task);
}

static gearman_return_t cb_created(gearman_task_st *task) {
  current_slot = (struct slot *)gearman_task_context(task);
  return on_created(task);
}

static int run_client(const struct opts *o) {
  struct client_run r;
  memset(&r, 0, sizeof r);
  r.o = o;
  r.client = gearman_client_create(NULL);
  if (r.client == NULL) die("client_create failed", NULL);
  if (gearman_client_add_server(r.client, o->host, o->port) != GEARMAN_SUCCESS) {
    die("add_server failed", gearman_client_error(r.client));
  }
  gearman_client_add_options(r.client, GEARMAN_CLIENT_FREE_TASKS);
  gearman_client_set_timeout(r.client, 120000);
  if (o->background) {
    gearman_client_set_created_fn(r.client, cb_created);
  } else {
    gearman_client_set_complete_fn(r.client, cb_complete);
  }
  gearman_client_set_fail_fn(r.client, cb_fail);
  gearman_client_set_exception_fn(r.client, cb_fail);
  r.payload = malloc((size_t)(o->size > 0 ? o->size : 1));
  if (r.payload == NULL) die("out of memory", NULL);
  memset(r.payload, 'x', (size_t)(o->size > 0 ? o->size : 1));
  slots = calloc((size_t)(o->inflight > 0 ? o->inflight : 1), sizeof *slots);

  if (o->warmup > 0) {
    client_phase(&r, o->warmup, o->inflight);
  }
  if (o->latency) {
    r.rtt = malloc(sizeof(double) * (size_t)(o->jobs > 0 ? o->jobs : 1));
  }
  double t0 = now(), c0 = cpu_self();
  client_phase(&r, o->jobs, o->inflight);
  double elapsed = now() - t0;

  printf("{\"mode\": \"client\", \"jobs\": %ld, \"ok\": %ld, \"failed\": %ld, \"seconds\": %.6f, "
         "\"rate\": %.1f, \"client_cpu\": %.4f",
         o->jobs, r.done, r.failed, elapsed, elapsed > 0 ? (double)r.done / elapsed : 0.0, cpu_self() - c0);
  if (r.rtt && r.nrtt > 0) {
    qsort(r.rtt, (size_t)r.nrtt, sizeof(double), cmp_double);
    long i50 = (r.nrtt * 50) / 100, i99 = (r.nrtt * 99) / 100;
    if (i99 >= r.nrtt) i99 = r.nrtt - 1;
    printf(", \"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f", r.rtt[i50] * 1e6, r.rtt[i99] * 1e6,
           r.rtt[r.nrtt - 1] * 1e6);
  }
  printf("}\n");
  fflush(stdout);
  gearman_client_free(r.client);
  free(r.payload);
  free(r.rtt);
  free(slots);
  return r.failed == 0 && r.done == o->jobs ? 0 : 1;
}

/* ------------------------------------------------------------------ worker */

static atomic_long worker_done;
static atomic_long worker_first_ns;
static long worker_total;
static volatile sig_atomic_t worker_stop;

static void *echo_fn(gearman_job_st *job, void *context, size_t *result_size, gearman_return_t *ret_ptr) {
  (void)context;
  size_t n = gearman_job_workload_size(job);
  const void *w = gearman_job_workload(job);
  long expect = 0;
  if (atomic_compare_exchange_strong(&worker_first_ns, &expect, 1)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    atomic_store(&worker_first_ns, (long)ts.tv_sec * 1000000000L + ts.tv_nsec);
  }
  void *result = NULL;
  if (n > 0) {
    result = malloc(n);
    if (result == NULL) {
      *ret_ptr = GEARMAN_WORK_FAIL;
      return NULL;
    }
    memcpy(result, w, n);
  }
  *result_size = n;
  *ret_ptr = GEARMAN_SUCCESS;
  atomic_fetch_add(&worker_done, 1);
  return result;
}

struct worker_arg {
  const struct opts *o;
  int ok;
};

static void *worker_thread(void *p) {
  struct worker_arg *a = (struct worker_arg *)p;
  const struct opts *o = a->o;
  gearman_worker_st *w = gearman_worker_create(NULL);
  if (w == NULL) return NULL;
  gearman_worker_add_server(w, o->host, o->port);
  gearman_worker_add_function(w, o->func, 0, echo_fn, NULL);
  gearman_worker_set_timeout(w, 200);
  a->ok = 1;
  while (!worker_stop) {
    if (worker_total > 0 && atomic_load(&worker_done) >= worker_total) break;
    gearman_return_t ret = gearman_worker_work(w);
    if (ret == GEARMAN_SUCCESS || ret == GEARMAN_TIMEOUT || ret == GEARMAN_IO_WAIT || ret == GEARMAN_NO_JOBS) {
      continue;
    }
    if (ret == GEARMAN_COULD_NOT_CONNECT || ret == GEARMAN_LOST_CONNECTION) {
      if (worker_stop) break;
      usleep(50000);
      continue;
    }
  }
  gearman_worker_free(w);
  return NULL;
}

static void *raw_worker_thread(void *p);

static void on_term(int sig) {
  (void)sig;
  worker_stop = 1;
}

static int run_workers(const struct opts *o) {
  long n = o->threads > 0 ? o->threads : 1;
  pthread_t *tids = calloc((size_t)n, sizeof *tids);
  struct worker_arg *args = calloc((size_t)n, sizeof *args);
  worker_total = o->jobs;
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  double t0 = now();
  for (long i = 0; i < n; i++) {
    args[i].o = o;
    pthread_create(&tids[i], NULL, o->raw ? raw_worker_thread : worker_thread, &args[i]);
  }
  for (long i = 0; i < n; i++) pthread_join(tids[i], NULL);
  double t1 = now();
  long first = atomic_load(&worker_first_ns);
  double since_first = first > 1 ? t1 - (double)first / 1e9 : 0.0;
  long done = atomic_load(&worker_done);
  printf("{\"mode\": \"worker\", \"threads\": %ld, \"jobs\": %ld, \"seconds\": %.6f, \"busy_seconds\": %.6f, "
         "\"rate\": %.1f, \"worker_cpu\": %.4f}\n",
         n, done, t1 - t0, since_first, since_first > 0 ? (double)done / since_first : 0.0, cpu_self());
  fflush(stdout);
  free(tids);
  free(args);
  return 0;
}

/* ------------------------------------------------------------------ idle workers (raw sockets) */

static size_t packet(unsigned char *buf, uint32_t type, const char *arg, size_t len) {
  memcpy(buf, "\0REQ", 4);
  uint32_t t = htonl(type), l = htonl((uint32_t)len);
  memcpy(buf + 4, &t, 4);
  memcpy(buf + 8, &l, 4);
  if (len) memcpy(buf + 12, arg, len);
  return 12 + len;
}

static int write_all(int fd, const unsigned char *buf, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, buf, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += k;
    n -= (size_t)k;
  }
  return 0;
}

/* ECHO_REQ on fd and wait for its ECHO_RES: proves the server accepted and read this connection. */
static int echo_roundtrip(int fd) {
  unsigned char buf[64];
  size_t n = packet(buf, 16 /* ECHO_REQ */, "ping", 4);
  if (write_all(fd, buf, n) < 0) return -1;
  size_t got = 0, want = 12 + 4;
  while (got < want) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 30000) <= 0) return -1;
    ssize_t k = read(fd, buf + got, sizeof buf - got);
    if (k <= 0) return -1;
    got += (size_t)k;
  }
  return 0;
}

static int run_idle(const struct opts *o) {
  long n = o->conns;
  int *fds = calloc((size_t)n, sizeof(int));
  unsigned char msg[512];
  size_t len = packet(msg, 1 /* CAN_DO */, o->func, strlen(o->func));
  len += packet(msg + len, 4 /* PRE_SLEEP */, NULL, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(o->port);
  if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1) die("idle: host must be an IPv4 address", o->host);
  double t0 = now();
  for (long i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket failed", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect failed", strerror(errno));
    if (write_all(fd, msg, len) < 0) die("write failed", strerror(errno));
    fds[i] = fd;
    /* pace ourselves below the servers' listen backlog (32 for both by default): every 16 connections,
     * wait until the server has accepted and read them, so no SYN is dropped and retried a second later */
    if ((i + 1) % 16 == 0 || i + 1 == n) {
      if (echo_roundtrip(fd) < 0) die("echo round trip failed", strerror(errno));
    }
  }
  printf("{\"mode\": \"idle\", \"ready\": %ld, \"seconds\": %.3f}\n", n, now() - t0);
  fflush(stdout);
  /* sit idle until stdin closes (the harness keeps a pipe open) or we are killed */
  char b[256];
  while (read(0, b, sizeof b) > 0) {
  }
  for (long i = 0; i < n; i++) close(fds[i]);
  free(fds);
  return 0;
}

/* ------------------------------------------------------------------ raw-socket client and workers (-R)
 *
 * libgearman's client and worker set SO_SNDBUF/SO_RCVBUF to 32 KiB and stall ~40 ms per 64 KiB on
 * loopback, which caps 1 MiB jobs at a few per second whatever the server does. With -R the client and
 * workers speak the protocol over plain sockets with the kernel's default buffers instead, so the big
 * payload case measures the server's buffering, not libgearman's. */

static int raw_connect(const struct opts *o) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(o->port);
  if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1) die("raw: host must be an IPv4 address", o->host);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("raw: connect failed", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* a growable byte buffer */
struct buf {
  unsigned char *p;
  size_t len, cap, off;
};

static void buf_reserve(struct buf *b, size_t extra) {
  if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
  if (b->len + extra <= b->cap) return;
  if (b->off > 0) { /* compact before growing */
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->len + extra <= b->cap) return;
  }
  size_t cap = b->cap ? b->cap : 65536;
  while (cap < b->len + extra) cap *= 2;
  b->p = realloc(b->p, cap);
  if (b->p == NULL) die("out of memory", NULL);
  b->cap = cap;
}

static void buf_packet(struct buf *b, uint32_t type, const char *a, size_t alen, const char *c, size_t clen,
                       const void *data, size_t dlen, int nargs) {
  /* nargs fields: a [\0 c] [\0 data]; data may be NULL-free binary */
  size_t body = alen + (nargs >= 2 ? 1 + clen : 0) + (nargs >= 3 ? 1 + dlen : 0);
  buf_reserve(b, 12 + body);
  unsigned char *q = b->p + b->len;
  memcpy(q, "\0REQ", 4);
  uint32_t t = htonl(type), l = htonl((uint32_t)body);
  memcpy(q + 4, &t, 4);
  memcpy(q + 8, &l, 4);
  q += 12;
  memcpy(q, a, alen);
  q += alen;
  if (nargs >= 2) {
    *q++ = 0;
    memcpy(q, c, clen);
    q += clen;
  }
  if (nargs >= 3) {
    *q++ = 0;
    memcpy(q, data, dlen);
    q += dlen;
  }
  b->len += 12 + body;
}

/* the next whole packet in b (type, body, body length), or 0 if more bytes are needed */
static int buf_next(struct buf *b, uint32_t *type, unsigned char **body, uint32_t *blen) {
  size_t have = b->len - b->off;
  if (have < 12) return 0;
  unsigned char *q = b->p + b->off;
  uint32_t t, l;
  memcpy(&t, q + 4, 4);
  memcpy(&l, q + 8, 4);
  t = ntohl(t);
  l = ntohl(l);
  if (have < 12 + (size_t)l) {
    buf_reserve(b, 12 + (size_t)l - have); /* make room for the whole packet at once: no quadratic growth */
    return 0;
  }
  *type = t;
  *body = b->p + b->off + 12;
  *blen = l;
  b->off += 12 + (size_t)l;
  return 1;
}

static int buf_read(struct buf *b, int fd) {
  buf_reserve(b, 65536);
  ssize_t k = read(fd, b->p + b->len, b->cap - b->len);
  if (k > 0) b->len += (size_t)k;
  return (int)k;
}

static int run_raw_client(const struct opts *o, long jobs, int report) {
  int fd = raw_connect(o);
  struct buf in = {0}, out = {0};
  char *payload = malloc((size_t)(o->size > 0 ? o->size : 1));
  memset(payload, 'x', (size_t)(o->size > 0 ? o->size : 1));
  long sent = 0, done = 0, failed = 0, inflight = 0;
  size_t flen = strlen(o->func);
  double t0 = now(), c0 = cpu_self();
  while (done + failed < jobs) {
    while (inflight < o->inflight && sent < jobs && out.len - out.off < (1u << 20)) {
      buf_packet(&out, 7 /* SUBMIT_JOB */, o->func, flen, "", 0, payload, (size_t)o->size, 3);
      sent++;
      inflight++;
    }
    struct pollfd p = {fd, POLLIN | (out.len > out.off ? POLLOUT : 0), 0};
    if (poll(&p, 1, 120000) <= 0) die("raw client: timeout", NULL);
    if (p.revents & POLLOUT) {
      ssize_t k = write(fd, out.p + out.off, out.len - out.off);
      if (k < 0 && errno != EAGAIN && errno != EINTR) die("raw client: write failed", strerror(errno));
      if (k > 0) out.off += (size_t)k;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      int k = buf_read(&in, fd);
      if (k == 0) die("raw client: server closed the connection", NULL);
      if (k < 0 && errno != EAGAIN && errno != EINTR) die("raw client: read failed", strerror(errno));
      uint32_t type, blen;
      unsigned char *body;
      while (buf_next(&in, &type, &body, &blen)) {
        if (type == 13 /* WORK_COMPLETE */) {
          unsigned char *nul = memchr(body, 0, blen);
          size_t dlen = nul ? blen - (size_t)(nul + 1 - body) : 0;
          if (dlen == (size_t)o->size) done++; else failed++;
          inflight--;
        } else if (type == 14 /* WORK_FAIL */ || type == 25 /* WORK_EXCEPTION */) {
          if (type == 14) {
            failed++;
            inflight--;
          }
        } else if (type == 19 /* ERROR */) {
          die("raw client: server sent ERROR", NULL);
        }
      }
    }
  }
  double elapsed = now() - t0;
  if (report) {
    printf("{\"mode\": \"client\", \"raw\": true, \"jobs\": %ld, \"ok\": %ld, \"failed\": %ld, \"seconds\": %.6f, "
           "\"rate\": %.1f, \"client_cpu\": %.4f}\n",
           jobs, done, failed, elapsed, elapsed > 0 ? (double)done / elapsed : 0.0, cpu_self() - c0);
    fflush(stdout);
  }
  close(fd);
  free(in.p);
  free(out.p);
  free(payload);
  return failed == 0 ? 0 : 1;
}

/* read one whole packet into b (blocking, with a poll timeout so SIGTERM/stop is noticed) */
static int raw_read_packet(int fd, struct buf *b, uint32_t *type, unsigned char **body, uint32_t *blen) {
  while (!buf_next(b, type, body, blen)) {
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 200);
    if (r == 0) {
      if (worker_stop || (worker_total > 0 && atomic_load(&worker_done) >= worker_total)) return 0;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    int k = buf_read(b, fd);
    if (k <= 0 && !(k < 0 && (errno == EINTR || errno == EAGAIN))) return -1;
  }
  return 1;
}

static void *raw_worker_thread(void *p) {
  struct worker_arg *a = (struct worker_arg *)p;
  const struct opts *o = a->o;
  int fd = raw_connect(o);
  struct buf in = {0}, out = {0};
  buf_packet(&out, 1 /* CAN_DO */, o->func, strlen(o->func), NULL, 0, NULL, 0, 1);
  a->ok = 1;
  while (!worker_stop && !(worker_total > 0 && atomic_load(&worker_done) >= worker_total)) {
    buf_packet(&out, 9 /* GRAB_JOB */, "", 0, NULL, 0, NULL, 0, 1);
    if (write_all(fd, out.p + out.off, out.len - out.off) < 0) break;
    out.off = out.len = 0;
    uint32_t type, blen;
    unsigned char *body;
    int r = raw_read_packet(fd, &in, &type, &body, &blen);
    if (r <= 0) break;
    if (type == 10 /* NO_JOB */) {
      buf_packet(&out, 4 /* PRE_SLEEP */, "", 0, NULL, 0, NULL, 0, 1);
      if (write_all(fd, out.p, out.len) < 0) break;
      out.off = out.len = 0;
      do {
        r = raw_read_packet(fd, &in, &type, &body, &blen);
      } while (r > 0 && type != 6 /* NOOP */);
      if (r <= 0) break;
      continue;
    }
    if (type != 11 /* JOB_ASSIGN */) continue;
    unsigned char *n1 = memchr(body, 0, blen);
    if (n1 == NULL) break;
    unsigned char *n2 = memchr(n1 + 1, 0, blen - (size_t)(n1 + 1 - body));
    if (n2 == NULL) break;
    size_t hlen = (size_t)(n1 - body), dlen = blen - (size_t)(n2 + 1 - body);
    long expect = 0;
    if (atomic_compare_exchange_strong(&worker_first_ns, &expect, 1)) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      atomic_store(&worker_first_ns, (long)ts.tv_sec * 1000000000L + ts.tv_nsec);
    }
    buf_packet(&out, 13 /* WORK_COMPLETE */, (const char *)body, hlen, (const char *)(n2 + 1), dlen, NULL, 0, 2);
    atomic_fetch_add(&worker_done, 1);
  }
  if (out.len > out.off) write_all(fd, out.p + out.off, out.len - out.off);
  close(fd);
  free(in.p);
  free(out.p);
  return NULL;
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen client|worker|idle [-H host] [-p port] [-f func] [-n jobs] [-k inflight]\n"
          "               [-s size] [-b] [-w warmup] [-L] [-t threads] [-c conns] [-R]\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *mode = argv[1];
  struct opts o = {"127.0.0.1", 4730, "bench", 1000, 100, 64, 1, 0, 0, 0, 0, 0};
  int c, jobs_given = 0;
  optind = 2;
  while ((c = getopt(argc, argv, "H:p:f:n:k:s:bw:Lt:c:R")) != -1) {
    switch (c) {
      case 'H': o.host = optarg; break;
      case 'p': o.port = (in_port_t)atoi(optarg); break;
      case 'f': o.func = optarg; break;
      case 'n': o.jobs = atol(optarg); jobs_given = 1; break;
      case 'k': o.inflight = atol(optarg); break;
      case 's': o.size = atol(optarg); break;
      case 'b': o.background = 1; break;
      case 'w': o.warmup = atol(optarg); break;
      case 'L': o.latency = 1; break;
      case 't': o.threads = atol(optarg); break;
      case 'c': o.conns = atol(optarg); break;
      case 'R': o.raw = 1; break;
      default: usage();
    }
  }
  signal(SIGPIPE, SIG_IGN);
  if (strcmp(mode, "client") == 0) {
    if (o.raw) {
      if (o.background || o.latency) die("-R supports foreground jobs without -L only", NULL);
      if (o.warmup > 0) run_raw_client(&o, o.warmup, 0);
      return run_raw_client(&o, o.jobs, 1);
    }
    return run_client(&o);
  }
  if (strcmp(mode, "worker") == 0) {
    if (!jobs_given) o.jobs = 0;
    return run_workers(&o);
  }
  if (strcmp(mode, "idle") == 0) return run_idle(&o);
  usage();
  return 2;
}
