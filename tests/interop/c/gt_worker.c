/* A libgearman worker for geartrain's interop tests.
 *
 * gt_worker -p PORT [-h HOST] [-c COUNT] [-i ID] [-f FUNC]...
 *
 * Registers the functions below (all of them unless -f picks some), works COUNT jobs (0 = until
 * killed) and prints one line per job on stdout: "JOB <function> <unique> <workload>".
 *
 *   rev     result = workload reversed (bytes)
 *   chatty  WORK_DATA "chunk1", WORK_STATUS 1/2, WORK_WARNING "warn", WORK_DATA "chunk2",
 *           WORK_STATUS 2/2, result "done:<workload>"
 *   fail    WORK_FAIL
 *   exc     WORK_EXCEPTION "oops:<workload>" (then the job fails)
 *   uniq    result = the job's unique
 *   record  result = workload (used to observe the order jobs are handed out)
 *   sleepy  sleeps <workload> milliseconds, then result = "slept"
 */
#include <libgearman-1.0/gearman.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_job(gearman_job_st *job) {
  const char *unique = gearman_job_unique(job);
  printf("JOB %s %s ", gearman_job_function_name(job), unique ? unique : "");
  fwrite(gearman_job_workload(job), 1, gearman_job_workload_size(job), stdout);
  printf("\n");
  fflush(stdout);
}

static void *copy(const void *data, size_t size, size_t *result_size) {
  char *out = malloc(size ? size : 1);
  if (size) memcpy(out, data, size);
  *result_size = size;
  return out;
}

static void *fn_rev(gearman_job_st *job, void *ctx, size_t *result_size, gearman_return_t *ret) {
  (void)ctx;
  print_job(job);
  size_t n = gearman_job_workload_size(job);
  const char *in = gearman_job_workload(job);
  char *out = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) out[i] = in[n - 1 - i];
  *result_size = n;
  *ret = GEARMAN_SUCCESS;
  return out;
}

static void *fn_chatty(gearman_job_st *job, void *ctx, size_t *result_size, gearman_return_t *ret) {
  (void)ctx;
  print_job(job);
  if (gearman_job_send_data(job, "chunk1", 6) != GEARMAN_SUCCESS
      || gearman_job_send_status(job, 1, 2) != GEARMAN_SUCCESS
      || gearman_job_send_warning(job, "warn", 4) != GEARMAN_SUCCESS
      || gearman_job_send_data(job, "chunk2", 6) != GEARMAN_SUCCESS
      || gearman_job_send_status(job, 2, 2) != GEARMAN_SUCCESS) {
    *ret = GEARMAN_WORK_FAIL;
    return NULL;
  }
  size_t n = gearman_job_workload_size(job);
  char *out = malloc(n + 5);
  memcpy(out, "done:", 5);
  memcpy(out + 5, gearman_job_workload(job), n);
  *result_size = n + 5;
  *ret = GEARMAN_SUCCESS;
  return out;
}

static void *fn_fail(gearman_job_st *job, void *ctx, size_t *result_size, gearman_return_t *ret) {
  (void)ctx;
  print_job(job);
  *result_size = 0;
  *ret = GEARMAN_WORK_FAIL;
  return NULL;
}

static void *fn_exc(gearman_job_st *job, void *ctx, size_t *result_size, gearman_return_t *ret) {
  (void)ctx;
  print_job(job);
  size_t n = gearman_job_workload_size(job);
  char *msg = malloc(n + 5);
  memcpy(msg, "oops:", 5);
  memcpy(msg + 5, gearman_job_workload(job), n);
  gearman_job_send_exception(job, msg, n + 5);
  free(msg);
  *result_size = 0;
  *ret = GEARMAN_WORK_FAIL;
  return NULL;
}

static void *fn_uniq(gearman_job_st *job, void *ctx, size_t *result_size, gearman_return_t *ret) {
  (void)ctx;
  print_job(job);
  const char *unique = gearman_job_unique(job);
  *ret = GEARMAN_SUCCESS;
  return copy(unique ? unique : "", unique ? strlen(unique) : 0, result_size);
}

static void *fn_record(gearman_job_st *job, void *ctx, size_t *result_size, gearman_return_t *ret) {
  (void)ctx;
  print_job(job);
  *ret = GEARMAN_SUCCESS;
  return copy(gearman_job_workload(job), gearman_job_workload_size(job), result_size);
}

static void *fn_sleepy(gearman_job_st *job, void *ctx, size_t *result_size, gearman_return_t *ret) {
  (void)ctx;
  print_job(job);
  char buf[32] = {0};
  size_t n = gearman_job_workload_size(job);
  memcpy(buf, gearman_job_workload(job), n < sizeof(buf) - 1 ? n : sizeof(buf) - 1);
  usleep((useconds_t)atoi(buf) * 1000);
  *ret = GEARMAN_SUCCESS;
  return copy("slept", 5, result_size);
}

struct fn { const char *name; gearman_worker_fn *fn; };
static const struct fn FUNCS[] = {
  {"rev", fn_rev}, {"chatty", fn_chatty}, {"fail", fn_fail}, {"exc", fn_exc},
  {"uniq", fn_uniq}, {"record", fn_record}, {"sleepy", fn_sleepy}, {NULL, NULL},
};

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  in_port_t port = 0;
  long count = 0;
  const char *id = NULL;
  const char *picked[16];
  int npicked = 0;
  int c;
  while ((c = getopt(argc, argv, "h:p:c:i:f:")) != -1) {
    switch (c) {
      case 'h': host = optarg; break;
      case 'p': port = (in_port_t)atoi(optarg); break;
      case 'c': count = atol(optarg); break;
      case 'i': id = optarg; break;
      case 'f': if (npicked < 16) picked[npicked++] = optarg; break;
      default: fprintf(stderr, "usage: %s -p PORT [-h HOST] [-c COUNT] [-i ID] [-f FUNC]...\n", argv[0]); return 2;
    }
  }
  gearman_worker_st *worker = gearman_worker_create(NULL);
  if (worker == NULL) return 1;
  if (gearman_worker_add_server(worker, host, port) != GEARMAN_SUCCESS) {
    fprintf(stderr, "add_server: %s\n", gearman_worker_error(worker));
    return 1;
  }
  if (id) gearman_worker_set_identifier(worker, id, strlen(id));
  for (const struct fn *f = FUNCS; f->name; f++) {
    int want = npicked == 0;
    for (int i = 0; i < npicked; i++) want |= strcmp(picked[i], f->name) == 0;
    if (want && gearman_worker_add_function(worker, f->name, 0, f->fn, NULL) != GEARMAN_SUCCESS) {
      fprintf(stderr, "add_function %s: %s\n", f->name, gearman_worker_error(worker));
      return 1;
    }
  }
  for (long done = 0; count == 0 || done < count; done++) {
    gearman_return_t ret = gearman_worker_work(worker);
    if (ret != GEARMAN_SUCCESS && ret != GEARMAN_WORK_FAIL) {
      fprintf(stderr, "work: %s\n", gearman_worker_error(worker));
      gearman_worker_free(worker);
      return 1;
    }
  }
  gearman_worker_free(worker);
  return 0;
}
