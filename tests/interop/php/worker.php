<?php
// A GearmanWorker (php-gearman) for geartrain's interop tests.
//   php worker.php HOST PORT COUNT [FUNC...]
// Registers rev, chatty, fail, exc and uniq (or only the FUNCs named), works COUNT jobs (0 = until
// killed) and prints "JOB <function> <unique> <workload>" for each job it starts.
[$host, $port, $count] = [$argv[1], (int)$argv[2], (int)$argv[3]];
$only = array_slice($argv, 4);

function job_line(GearmanJob $job): void {
    echo "JOB ", $job->functionName(), " ", $job->unique(), " ", $job->workload(), "\n";
    fflush(STDOUT);
}

$funcs = [
    'rev' => function (GearmanJob $job) { job_line($job); return strrev($job->workload()); },
    'chatty' => function (GearmanJob $job) {
        job_line($job);
        $job->sendData("chunk");
        $job->sendStatus(1, 2);
        $job->sendWarning("careful");
        $job->sendStatus(2, 2);
        return "done:" . $job->workload();
    },
    'fail' => function (GearmanJob $job) { job_line($job); $job->sendFail(); return null; },
    'exc' => function (GearmanJob $job) {
        job_line($job);
        $job->sendException("oops:" . $job->workload());
        return null;
    },
    'uniq' => function (GearmanJob $job) { job_line($job); return $job->unique(); },
];

$worker = new GearmanWorker();
$worker->addServer($host, $port);
$worker->setTimeout(1000);
foreach ($funcs as $name => $fn) {
    if (!$only || in_array($name, $only, true)) {
        $worker->addFunction($name, $fn);
    }
}
$done = 0;
while ($count === 0 || $done < $count) {
    if (@$worker->work()) {
        $done++;
        continue;
    }
    $rc = $worker->returnCode();
    if ($rc === GEARMAN_TIMEOUT || $rc === GEARMAN_IO_WAIT || $rc === GEARMAN_NO_JOBS) {
        continue;
    }
    if ($rc === GEARMAN_WORK_FAIL || $rc === GEARMAN_WORK_EXCEPTION) {
        $done++;
        continue;
    }
    fwrite(STDERR, "work: " . $worker->error() . " ($rc)\n");
    exit(1);
}
exit(0);
