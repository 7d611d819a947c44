#!/usr/bin/perl
# A Gearman::Worker for geartrain's interop tests.
#   worker.pl HOST:PORT COUNT [FUNC...]
# Registers rev, chatty, fail, die, zero, empty and falsy (or only the FUNCs named), works COUNT jobs (0 = until killed),
# and prints "JOB <function> <workload>" for each job it starts.
use strict;
use warnings;
use Gearman::Worker;

$| = 1;
my ($server, $count, @only) = @ARGV;
die "usage: worker.pl HOST:PORT COUNT [FUNC...]\n" unless $server && defined $count;

my $worker = Gearman::Worker->new(job_servers => [$server]);
my %funcs = (
    rev    => sub { my $job = shift; print "JOB rev ", $job->arg, "\n"; return scalar reverse $job->arg; },
    chatty => sub {
        my $job = shift;
        print "JOB chatty ", $job->arg, "\n";
        $worker->send_work_data($job, "chunk");
        $job->set_status(1, 2);
        $worker->send_work_warning($job, "careful");
        $job->set_status(2, 2);
        return "done:" . $job->arg;
    },
    fail => sub { my $job = shift; print "JOB fail ", $job->arg, "\n"; return undef; },
    die  => sub { my $job = shift; print "JOB die ", $job->arg, "\n"; die "boom\n"; },
    # results that are false in Perl: Gearman::Worker sends them as the bare handle, without a NUL
    zero  => sub { my $job = shift; print "JOB zero ", $job->arg, "\n"; return "0"; },
    empty => sub { my $job = shift; print "JOB empty ", $job->arg, "\n"; return ""; },
    falsy => sub {
        my $job = shift;
        print "JOB falsy ", $job->arg, "\n";
        $worker->send_work_data($job, "0");
        $worker->send_work_status($job, 0, 2);  # sent as the bare handle
        $worker->send_work_status($job, 1, 2);  # sent without its denominator
        $worker->send_work_warning($job, "");
        return "0";
    },
);
for my $name (@only ? @only : sort keys %funcs) {
    $worker->register_function($name => $funcs{$name});
}
my $done = 0;
$worker->work(
    on_complete => sub { $done++ },
    on_fail     => sub { $done++ },
    stop_if     => sub { return $count > 0 && $done >= $count },
);
exit 0;
