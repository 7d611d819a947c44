/* A minimal libgearman client for throughput measurements: runs COUNT "echo" jobs, IN_FLIGHT at a time
   (add that many tasks, run them, repeat) and prints the rate.
   Build: cc -O2 -o echo_client echo_client.c -lgearman
   Run:   echo_client HOST PORT [COUNT [IN_FLIGHT [FUNCTION]]] */
#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char *argv[]) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s HOST PORT [COUNT [IN_FLIGHT [FUNCTION]]]\n", argv[0]);
    return 2;
  }
  long count = argc > 3 ? atol(argv[3]) : 100000;
  long in_flight = argc > 4 ? atol(argv[4]) : 100;
  const char *function = argc > 5 ? argv[5] : "echo";
  gearman_client_st *client = gearman_client_create(NULL);
  if (client == NULL || gearman_client_add_server(client, argv[1], (in_port_t)atoi(argv[2])) != GEARMAN_SUCCESS)
    return 1;
  gearman_client_add_options(client, GEARMAN_CLIENT_FREE_TASKS);
  const char payload[] = "0123456789";
  long done = 0, failed = 0;
  double t0 = now();
  while (done < count) {
    long batch = count - done < in_flight ? count - done : in_flight;
    for (long i = 0; i < batch; i++) {
      gearman_return_t rc;
      if (gearman_client_add_task(client, NULL, NULL, function, NULL, payload, sizeof payload - 1, &rc) == NULL) {
        fprintf(stderr, "add_task: %s\n", gearman_client_error(client));
        return 1;
      }
    }
    gearman_return_t rc = gearman_client_run_tasks(client);
    if (rc != GEARMAN_SUCCESS) {
      fprintf(stderr, "run_tasks: %s\n", gearman_client_error(client));
      failed += batch;
    }
    done += batch;
  }
  double dt = now() - t0;
  printf("%ld jobs in %.2fs: %.0f jobs/s (%ld in flight, %ld failed)\n", count, dt, count / dt, in_flight, failed);
  return failed ? 1 : 0;
}
