<?php
// A GearmanClient (php-gearman) for geartrain's interop tests.
//   php client.php HOST PORT do normal|high|low FUNC ARG [UNIQUE] -> "RESULT <result>" or "RC <code>"
//   php client.php HOST PORT bg normal|high|low FUNC ARG [UNIQUE] -> "HANDLE <handle>"
//   php client.php HOST PORT status HANDLE                        -> "KNOWN k RUNNING r NUM n DEN d"
//   php client.php HOST PORT events FUNC ARG                      -> one line per callback
//   php client.php HOST PORT many N FUNC                          -> "COMPLETED c WRONG w FAILED f"
[$host, $port, $cmd] = [$argv[1], (int)$argv[2], $argv[3]];
$args = array_slice($argv, 4);

$client = new GearmanClient();
$client->addServer($host, $port);
$client->setTimeout(20000);

switch ($cmd) {
case 'do':
    [$prio, $func, $arg] = $args;
    $unique = $args[3] ?? null;
    $method = ['normal' => 'doNormal', 'high' => 'doHigh', 'low' => 'doLow'][$prio];
    $result = $client->$method($func, $arg, $unique);
    $rc = $client->returnCode();
    echo $rc === GEARMAN_SUCCESS ? "RESULT $result\n" : "RC $rc\n";
    break;
case 'bg':
    [$prio, $func, $arg] = $args;
    $unique = $args[3] ?? null;
    $method = ['normal' => 'doBackground', 'high' => 'doHighBackground', 'low' => 'doLowBackground'][$prio];
    $handle = $client->$method($func, $arg, $unique);
    echo $client->returnCode() === GEARMAN_SUCCESS ? "HANDLE $handle\n" : "RC " . $client->returnCode() . "\n";
    break;
case 'status':
    [$known, $running, $num, $den] = $client->jobStatus($args[0]);
    printf("KNOWN %d RUNNING %d NUM %d DEN %d\n", $known, $running, $num, $den);
    break;
case 'events':
    [$func, $arg] = $args;
    $client->setDataCallback(function (GearmanTask $t) { echo "DATA ", $t->data(), "\n"; });
    $client->setStatusCallback(function (GearmanTask $t) {
        echo "STATUS ", $t->taskNumerator(), "/", $t->taskDenominator(), "\n";
    });
    $client->setWarningCallback(function (GearmanTask $t) { echo "WARNING ", $t->data(), "\n"; });
    $client->setCompleteCallback(function (GearmanTask $t) { echo "COMPLETE ", $t->data(), "\n"; });
    $client->setExceptionCallback(function (GearmanTask $t) { echo "EXCEPTION ", $t->data(), "\n"; });
    $client->setFailCallback(function (GearmanTask $t) { echo "FAIL\n"; });
    $client->addTask($func, $arg);
    if (!$client->runTasks()) {
        echo "RC ", $client->returnCode(), "\n";
    }
    break;
case 'many':
    [$n, $func] = [(int)$args[0], $args[1]];
    $counts = ['ok' => 0, 'wrong' => 0, 'failed' => 0];
    $client->setCompleteCallback(function (GearmanTask $t, $want) use (&$counts) {
        $t->data() === $want ? $counts['ok']++ : $counts['wrong']++;
    });
    $client->setFailCallback(function (GearmanTask $t) use (&$counts) { $counts['failed']++; });
    for ($i = 0; $i < $n; $i++) {
        $arg = sprintf("php-%04d", $i);
        $client->addTask($func, $arg, strrev($arg));
    }
    $client->runTasks();
    printf("COMPLETED %d WRONG %d FAILED %d\n", $counts['ok'], $counts['wrong'], $counts['failed']);
    break;
default:
    fwrite(STDERR, "unknown command $cmd\n");
    exit(2);
}
exit(0);
