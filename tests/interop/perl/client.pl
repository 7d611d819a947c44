#!/usr/bin/perl
# A Gearman::Client for geartrain's interop tests.
#   client.pl HOST:PORT do FUNC ARG [high|normal|low]  -> "RESULT <result>" or "FAIL"
#   client.pl HOST:PORT bg FUNC ARG [UNIQUE]           -> "HANDLE <handle>"
#   client.pl HOST:PORT status HANDLE                  -> "KNOWN <0|1> RUNNING <0|1>"
#   client.pl HOST:PORT events FUNC ARG                -> one line per callback (DATA, STATUS, WARNING, COMPLETE, FAIL)
#   client.pl HOST:PORT exception FUNC ARG             -> "EXCEPTION <text>" then "FAIL" (exceptions requested)
#   client.pl HOST:PORT many N FUNC                    -> "COMPLETED <n> WRONG <n> FAILED <n>" (N tasks in one task set)
#   client.pl HOST:PORT adminstatus                    -> "<func> <queued> <running> <workers>" per function
use strict;
use warnings;
use Gearman::Client;

$| = 1;
my ($server, $cmd, @args) = @ARGV;
die "usage: client.pl HOST:PORT COMMAND ...\n" unless $server && $cmd;
my $client = Gearman::Client->new(job_servers => [$server], exceptions => ($cmd eq "exception" ? 1 : 0));

if ($cmd eq "do") {
    my ($func, $arg, $prio) = @args;
    my $ref = $client->do_task($func, $arg, {priority => ($prio || "normal")});
    print defined $ref ? "RESULT $$ref\n" : "FAIL\n";
}
elsif ($cmd eq "bg") {
    my ($func, $arg, $uniq) = @args;
    my $handle = $client->dispatch_background($func, $arg, {defined $uniq ? (uniq => $uniq) : ()});
    print defined $handle ? "HANDLE $handle\n" : "NOHANDLE\n";
}
elsif ($cmd eq "status") {
    my $st = $client->get_status($args[0]);
    print defined $st ? sprintf("KNOWN %d RUNNING %d\n", $st->known ? 1 : 0, $st->running ? 1 : 0) : "NOSTATUS\n";
}
elsif ($cmd eq "events" || $cmd eq "exception") {
    my ($func, $arg) = @args;
    my $ts = $client->new_task_set;
    $ts->add_task($func => $arg, {
        on_data      => sub { print "DATA ${$_[0]}\n" },
        on_status    => sub { print "STATUS $_[0]/$_[1]\n" },
        on_warning   => sub { print "WARNING ${$_[0]}\n" },
        on_exception => sub { my $e = $_[0]; chomp $e; print "EXCEPTION $e\n" },
        on_complete  => sub { print "COMPLETE ${$_[0]}\n" },
        on_fail      => sub { print "FAIL\n" },
    });
    $ts->wait(timeout => 20);
}
elsif ($cmd eq "many") {
    my ($n, $func) = @args;
    my ($ok, $wrong, $failed) = (0, 0, 0);
    my $ts = $client->new_task_set;
    for my $i (1 .. $n) {
        my $arg = sprintf("perl-%04d", $i);
        my $want = reverse $arg;
        $ts->add_task($func => $arg, {
            on_complete => sub { ${$_[0]} eq $want ? $ok++ : $wrong++ },
            on_fail     => sub { $failed++ },
        });
    }
    $ts->wait(timeout => 30);
    print "COMPLETED $ok WRONG $wrong FAILED $failed\n";
}
elsif ($cmd eq "adminstatus") {
    my $status = $client->get_job_server_status;
    for my $js (sort keys %$status) {
        for my $func (sort keys %{ $status->{$js} }) {
            my $f = $status->{$js}{$func};
            print join(" ", $func, $f->{queued}, $f->{running}, $f->{capable}), "\n";
        }
    }
}
else {
    die "unknown command $cmd\n";
}
exit 0;
