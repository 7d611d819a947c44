/* A libgearman client for geartrain's interop tests.
 *
 * gt_client -p PORT [-h HOST] [-e] COMMAND ...
 *   -e                               ask for exceptions (OPTION_REQ exceptions)
 *   submit MODE FUNC UNIQUE DATA     one job; MODE = fg|high|low|bg|highbg|lowbg; UNIQUE "-" = none.
 *                                    Prints one line per event: "CREATED <handle>", "DATA <n> <bytes>",
 *                                    "WARNING <n> <bytes>", "STATUS <num>/<den>", "COMPLETE <n> <bytes>",
 *                                    "FAIL", "EXCEPTION <n> <bytes>".
 *   many N FUNC                      N foreground jobs in flight at once (add_task + run_tasks) to a
 *                                    reversing worker; prints "COMPLETED <c> WRONG <w> FAILED <f>".
 *   manybg N FUNC                    N background jobs in one run_tasks, priorities high, normal, low in
 *                                    turn, workloads "h-0000", "n-0001", "l-0002"...; prints
 *                                    "CREATED <jobs created> DISTINCT <distinct handles>".
 *   status HANDLE                    prints "KNOWN <k> RUNNING <r> NUM <n> DEN <d>".
 */
#include <libgearman-1.0/gearman.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_bytes(const char *tag, const void *data, size_t size) {
  printf("%s %zu ", tag, size);
  if (size) fwrite(data, 1, size, stdout);
  printf("\n");
  fflush(stdout);
}

static gearman_return_t on_created(gearman_task_st *task) {
  printf("CREATED %s\n", gearman_task_job_handle(task));
  fflush(stdout);
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_data(gearman_task_st *task) {
  print_bytes("DATA", gearman_task_data(task), gearman_task_data_size(task));
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_warning(gearman_task_st *task) {
  print_bytes("WARNING", gearman_task_data(task), gearman_task_data_size(task));
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_status(gearman_task_st *task) {
  printf("STATUS %u/%u\n", gearman_task_numerator(task), gearman_task_denominator(task));
  fflush(stdout);
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_complete(gearman_task_st *task) {
  print_bytes("COMPLETE", gearman_task_data(task), gearman_task_data_size(task));
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_exception(gearman_task_st *task) {
  print_bytes("EXCEPTION", gearman_task_data(task), gearman_task_data_size(task));
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_fail(gearman_task_st *task) {
  (void)task;
  printf("FAIL\n");
  fflush(stdout);
  return GEARMAN_SUCCESS;
}

static int submit(gearman_client_st *client, const char *mode, const char *func, const char *unique,
                  const char *data) {
  gearman_return_t ret = GEARMAN_SUCCESS;
  gearman_task_st *task = NULL;
  size_t n = strlen(data);
  if (strcmp(unique, "-") == 0) unique = NULL;
  if (strcmp(mode, "fg") == 0) {
    task = gearman_client_add_task(client, NULL, NULL, func, unique, data, n, &ret);
  } else if (strcmp(mode, "high") == 0) {
    task = gearman_client_add_task_high(client, NULL, NULL, func, unique, data, n, &ret);
  } else if (strcmp(mode, "low") == 0) {
    task = gearman_client_add_task_low(client, NULL, NULL, func, unique, data, n, &ret);
  } else if (strcmp(mode, "bg") == 0) {
    task = gearman_client_add_task_background(client, NULL, NULL, func, unique, data, n, &ret);
  } else if (strcmp(mode, "highbg") == 0) {
    task = gearman_client_add_task_high_background(client, NULL, NULL, func, unique, data, n, &ret);
  } else if (strcmp(mode, "lowbg") == 0) {
    task = gearman_client_add_task_low_background(client, NULL, NULL, func, unique, data, n, &ret);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  if (task == NULL || ret != GEARMAN_SUCCESS) {
    fprintf(stderr, "add_task: %s\n", gearman_client_error(client));
    return 1;
  }
  ret = gearman_client_run_tasks(client);
  if (ret != GEARMAN_SUCCESS) {
    fprintf(stderr, "run_tasks: %s\n", gearman_client_error(client));
    return 1;
  }
  return 0;
}

struct many_ctx { int completed, wrong, failed; };

static gearman_return_t many_complete(gearman_task_st *task) {
  struct many_ctx *ctx = gearman_task_context(task);
  const char *want = gearman_task_unique(task);  /* the unique holds the expected result */
  size_t n = gearman_task_data_size(task);
  if (want && strlen(want) == n && memcmp(want, gearman_task_data(task), n) == 0) ctx->completed++;
  else ctx->wrong++;
  return GEARMAN_SUCCESS;
}

static gearman_return_t many_fail(gearman_task_st *task) {
  struct many_ctx *ctx = gearman_task_context(task);
  ctx->failed++;
  return GEARMAN_SUCCESS;
}

static int many(gearman_client_st *client, int count, const char *func) {
  struct many_ctx ctx = {0, 0, 0};
  gearman_client_set_created_fn(client, NULL);
  gearman_client_set_data_fn(client, NULL);
  gearman_client_set_status_fn(client, NULL);
  gearman_client_set_complete_fn(client, many_complete);
  gearman_client_set_fail_fn(client, many_fail);
  for (int i = 0; i < count; i++) {
    char data[32], expect[32];
    int n = snprintf(data, sizeof data, "job-%04d", i);
    for (int k = 0; k < n; k++) expect[k] = data[n - 1 - k];
    expect[n] = 0;
    gearman_return_t ret;
    gearman_task_st *task = gearman_client_add_task(client, NULL, &ctx, func, expect, data, (size_t)n, &ret);
    if (task == NULL || ret != GEARMAN_SUCCESS) {
      fprintf(stderr, "add_task %d: %s\n", i, gearman_client_error(client));
      return 1;
    }
  }
  gearman_return_t ret = gearman_client_run_tasks(client);
  printf("COMPLETED %d WRONG %d FAILED %d\n", ctx.completed, ctx.wrong, ctx.failed);
  if (ret != GEARMAN_SUCCESS) {
    fprintf(stderr, "run_tasks: %s\n", gearman_client_error(client));
    return 1;
  }
  return 0;
}

struct manybg_ctx { int created; char (*handles)[GEARMAN_JOB_HANDLE_SIZE]; };

static gearman_return_t manybg_created(gearman_task_st *task) {
  struct manybg_ctx *ctx = gearman_task_context(task);
  snprintf(ctx->handles[ctx->created++], GEARMAN_JOB_HANDLE_SIZE, "%s", gearman_task_job_handle(task));
  return GEARMAN_SUCCESS;
}

static int cmp_handle(const void *a, const void *b) { return strcmp(a, b); }

static int manybg(gearman_client_st *client, int count, const char *func) {
  struct manybg_ctx ctx = {0, calloc((size_t)count, GEARMAN_JOB_HANDLE_SIZE)};
  gearman_client_set_created_fn(client, manybg_created);
  for (int i = 0; i < count; i++) {
    char data[32];
    const char *prio = "hnl" + i % 3;
    int n = snprintf(data, sizeof data, "%c-%04d", *prio, i);
    gearman_return_t ret;
    gearman_task_st *task;
    if (i % 3 == 0) task = gearman_client_add_task_high_background(client, NULL, &ctx, func, NULL, data, (size_t)n, &ret);
    else if (i % 3 == 1) task = gearman_client_add_task_background(client, NULL, &ctx, func, NULL, data, (size_t)n, &ret);
    else task = gearman_client_add_task_low_background(client, NULL, &ctx, func, NULL, data, (size_t)n, &ret);
    if (task == NULL || ret != GEARMAN_SUCCESS) {
      fprintf(stderr, "add_task %d: %s\n", i, gearman_client_error(client));
      return 1;
    }
  }
  gearman_return_t ret = gearman_client_run_tasks(client);
  qsort(ctx.handles, (size_t)ctx.created, GEARMAN_JOB_HANDLE_SIZE, cmp_handle);
  int distinct = 0;
  for (int i = 0; i < ctx.created; i++) distinct += i == 0 || strcmp(ctx.handles[i], ctx.handles[i - 1]) != 0;
  printf("CREATED %d DISTINCT %d\n", ctx.created, distinct);
  free(ctx.handles);
  if (ret != GEARMAN_SUCCESS) {
    fprintf(stderr, "run_tasks: %s\n", gearman_client_error(client));
    return 1;
  }
  return 0;
}

static int status(gearman_client_st *client, const char *handle) {
  bool known = false, running = false;
  uint32_t num = 0, den = 0;
  gearman_return_t ret = gearman_client_job_status(client, handle, &known, &running, &num, &den);
  if (ret != GEARMAN_SUCCESS) {
    fprintf(stderr, "job_status: %s\n", gearman_client_error(client));
    return 1;
  }
  printf("KNOWN %d RUNNING %d NUM %u DEN %u\n", known, running, num, den);
  return 0;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  in_port_t port = 0;
  int exceptions = 0;
  int c;
  while ((c = getopt(argc, argv, "h:p:e")) != -1) {
    switch (c) {
      case 'h': host = optarg; break;
      case 'p': port = (in_port_t)atoi(optarg); break;
      case 'e': exceptions = 1; break;
      default: return 2;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "usage: %s -p PORT [-e] submit|many|status ...\n", argv[0]);
    return 2;
  }
  gearman_client_st *client = gearman_client_create(NULL);
  if (client == NULL) return 1;
  gearman_client_set_timeout(client, 20000);
  if (gearman_client_add_server(client, host, port) != GEARMAN_SUCCESS) {
    fprintf(stderr, "add_server: %s\n", gearman_client_error(client));
    return 1;
  }
  if (exceptions) gearman_client_add_options(client, GEARMAN_CLIENT_EXCEPTION);
  gearman_client_set_created_fn(client, on_created);
  gearman_client_set_data_fn(client, on_data);
  gearman_client_set_warning_fn(client, on_warning);
  gearman_client_set_status_fn(client, on_status);
  gearman_client_set_complete_fn(client, on_complete);
  gearman_client_set_exception_fn(client, on_exception);
  gearman_client_set_fail_fn(client, on_fail);

  const char *cmd = argv[optind];
  int rc = 2;
  if (strcmp(cmd, "submit") == 0 && argc - optind == 5) {
    rc = submit(client, argv[optind + 1], argv[optind + 2], argv[optind + 3], argv[optind + 4]);
  } else if (strcmp(cmd, "many") == 0 && argc - optind == 3) {
    rc = many(client, atoi(argv[optind + 1]), argv[optind + 2]);
  } else if (strcmp(cmd, "manybg") == 0 && argc - optind == 3) {
    rc = manybg(client, atoi(argv[optind + 1]), argv[optind + 2]);
  } else if (strcmp(cmd, "status") == 0 && argc - optind == 2) {
    rc = status(client, argv[optind + 1]);
  } else {
    fprintf(stderr, "bad command\n");
  }
  gearman_client_free(client);
  return rc;
}
