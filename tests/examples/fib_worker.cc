// The seed's C++ fib worker, rewritten for the tests: registers "fib" (with a timeout of 10, as the
// seed did, which libgearman sends as CAN_DO_TIMEOUT), reads n in decimal, answers fib(n) in decimal.
// Build: g++ -O2 -o fib_worker fib_worker.cc -lgearman ; run: fib_worker -h HOST -p PORT [-c COUNT]
#include <libgearman-1.0/gearman.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <unistd.h>

static long fib(long n) { return n < 2 ? 1 : fib(n - 2) + fib(n - 1); }

static void *fib_job(gearman_job_st *job, void *, size_t *result_size, gearman_return_t *ret) {
  std::string workload(static_cast<const char *>(gearman_job_workload(job)), gearman_job_workload_size(job));
  std::string answer = std::to_string(fib(std::atol(workload.c_str())));
  char *result = static_cast<char *>(std::malloc(answer.size()));
  std::memcpy(result, answer.data(), answer.size());
  *result_size = answer.size();
  *ret = GEARMAN_SUCCESS;
  return result;
}

int main(int argc, char *argv[]) {
  const char *host = "127.0.0.1";
  in_port_t port = 4730;
  long count = -1;
  int c;
  while ((c = getopt(argc, argv, "h:p:c:")) != -1) {
    switch (c) {
      case 'h': host = optarg; break;
      case 'p': port = static_cast<in_port_t>(std::atoi(optarg)); break;
      case 'c': count = std::atol(optarg); break;
      default:
        std::cerr << "usage: " << argv[0] << " [-h host] [-p port] [-c count]" << std::endl;
        return 2;
    }
  }
  gearman_worker_st *worker = gearman_worker_create(nullptr);
  if (worker == nullptr) return 1;
  if (gearman_worker_add_server(worker, host, port) != GEARMAN_SUCCESS) return 1;
  if (gearman_worker_add_function(worker, "fib", 10, fib_job, nullptr) != GEARMAN_SUCCESS) return 1;
  long done = 0;
  while (count < 0 || done < count) {
    gearman_return_t rc = gearman_worker_work(worker);
    if (rc == GEARMAN_SUCCESS) {
      ++done;
    } else if (rc != GEARMAN_IO_WAIT && rc != GEARMAN_NO_JOBS) {
      std::cerr << "fib_worker: " << gearman_worker_error(worker) << std::endl;
      sleep(1);
    }
  }
  std::cout << "fib_worker: " << done << " jobs" << std::endl;
  gearman_worker_free(worker);
  return 0;
}
