/* A minimal libgearman worker for throughput measurements: function "echo" returns its payload.
   Build: cc -O2 -o echo_worker echo_worker.c -lgearman
   Run:   echo_worker HOST PORT [FUNCTION] */
#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gearman_return_t echo_fn(gearman_job_st *job, void *context) {
  (void)context;
  return gearman_job_send_complete(job, gearman_job_workload(job), gearman_job_workload_size(job));
}

int main(int argc, char *argv[]) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s HOST PORT [FUNCTION]\n", argv[0]);
    return 2;
  }
  const char *function = argc > 3 ? argv[3] : "echo";
  gearman_worker_st *worker = gearman_worker_create(NULL);
  if (worker == NULL) return 1;
  if (gearman_worker_add_server(worker, argv[1], (in_port_t)atoi(argv[2])) != GEARMAN_SUCCESS) return 1;
  gearman_function_t fn = gearman_function_create(echo_fn);
  if (gearman_worker_define_function(worker, function, strlen(function), fn, 0, NULL) != GEARMAN_SUCCESS) return 1;
  for (;;) {
    gearman_return_t rc = gearman_worker_work(worker);
    if (rc != GEARMAN_SUCCESS && rc != GEARMAN_IO_WAIT && rc != GEARMAN_NO_JOBS) {
      fprintf(stderr, "echo_worker: %s\n", gearman_worker_error(worker));
      if (rc == GEARMAN_LOST_CONNECTION || rc == GEARMAN_COULD_NOT_CONNECT) continue;
    }
  }
  return 0;
}
