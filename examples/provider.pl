#!/usr/bin/perl
# SPDX-License-Identifier: MIT
# A backup provider for `nbdattach run` in Perl, in the style of a vzdump backup provider
# (core modules only). Usage, as nbdattach runs it:
#
#   nbdattach run --volume name=drive-scsi0,bitmap=b0,uri=... -- provider.pl OUTDIR
#
# For each volume in NBDATTACH_RUN: verify the region map (regionmap(5)) while reading it,
# copy exactly those regions from the device into OUTDIR/NAME.img, list them in OUTDIR/NAME.map
# and acknowledge each one so that nbdattach discards it from the fleecing image. The device
# has read-ahead 0, so plain (buffered) reads stay inside the regions. Dies on any error: an
# incomplete backup must never look complete.
use strict;
use warnings;
use Errno qw(EINTR);
use Fcntl qw(O_RDONLY O_WRONLY O_CREAT O_TRUNC SEEK_SET);
use IO::Handle;
use JSON::PP;

my $CHUNK = 4 * 1024 * 1024;
my $TRUNC = 'map truncated before its trailer';
my @CRC;
for my $i (0 .. 255) {
    my $c = $i;
    $c = ($c & 1) ? (($c >> 1) ^ 0x82F63B78) : ($c >> 1) for 1 .. 8;
    $CRC[$i] = $c;
}

sub crc32c {
    my ($reg, $data) = @_;
    $reg = $CRC[($reg ^ $_) & 0xff] ^ ($reg >> 8) for unpack('C*', $data);
    return $reg;
}

# A pipe returns what it has so far: read until $n bytes have come. sysread and syswrite fail
# with EINTR when a signal handler ran; they are simply called again.
sub read_exact {
    my ($fh, $n, $eof) = @_;
    my $buf = '';
    while (length($buf) < $n) {
        my $got = sysread($fh, $buf, $n - length($buf), length($buf));
        next if !defined $got && $! == EINTR;
        die "read: $!\n" if !defined $got;
        die "$eof\n" if !$got;
    }
    return $buf;
}

# A write may store less than asked (a disk full half-way): write the rest, or die.
sub write_all {
    my ($fh, $buf, $what) = @_;
    for (my $done = 0; $done < length($buf);) {
        my $n = syswrite($fh, $buf, length($buf) - $done, $done);
        next if !defined $n && $! == EINTR;
        die "$what: $!\n" if !defined $n;
        $done += $n;
    }
}

# Calls $cb->(offset, length) for each region; dies unless the whole map verifies, with the
# checks of libregionmap's reader (regionmap(5)).
sub each_region {
    my ($fh, $cb) = @_;
    my $head = read_exact($fh, 48, $TRUNC);
    die "bad map magic\n" if substr($head, 0, 8) ne "RGNMAP\r\n";
    my ($version, $flags, $size, $gran, $hcount, $ctxlen) = unpack('L< L< Q< Q< Q< S<', substr($head, 8));
    die "bad map header\n" if $version != 1 || ($flags & ~1) || !$size || $ctxlen > 1024
        || substr($head, 42) =~ /[^\0]/;
    die "bad map granularity $gran\n" if !$gran || ($gran & ($gran - 1)) || $gran > 1 << 30;
    my $ctx = read_exact($fh, ($ctxlen + 15) & ~15, $TRUNC);
    die "bad map context\n" if substr($ctx, 0, $ctxlen) =~ /[^\x20-\x7e]/ || substr($ctx, $ctxlen) =~ /[^\0]/;
    my $reg = crc32c(0xffffffff, substr($head, 0, 32) . ("\xff" x 8) . substr($head, 40) . $ctx);
    my ($end, $count, $total) = (0, 0, 0);
    my $rec;
    while (substr($rec = read_exact($fh, 16, $TRUNC), 0, 8) ne ("\xff" x 8)) {
        my ($off, $len) = unpack('Q< Q<', $rec);
        # Aligned, except that the last region may end at an unaligned export size; sorted,
        # neither overlapping nor touching; a FULL map is the one region {0, size}.
        die "bad map record $off+$len\n" if !$len || $len > $size || $off > $size - $len
            || ($off & ($gran - 1)) || (($len & ($gran - 1)) && $off + $len != $size)
            || ($count && $off <= $end) || (($flags & 1) && ($off || $len != $size));
        $reg = crc32c($reg, $rec);
        ($end, $count, $total) = ($off + $len, $count + 1, $total + $len);
        $cb->($off, $len);
    }
    my ($tcount, $ttotal, $tcrc, $zero) = unpack('Q< Q< L< L<', read_exact($fh, 24, $TRUNC));
    die "bad map trailer\n" if substr($rec, 8) ne 'RGNMAPTR' || $tcount != $count || $ttotal != $total
        || $tcrc != ($reg ^ 0xffffffff) || $zero || ($hcount != ~0 && $hcount != $count);
    die "FULL map without its one region\n" if ($flags & 1) && $count != 1;
    my $got; # nothing may follow the trailer
    do { $got = sysread($fh, my $more, 1) } while !defined $got && $! == EINTR;
    die defined $got ? "data after the map trailer\n" : "read: $!\n" if !defined $got || $got;
}

sub backup_volume {
    my ($vol, $outdir, $ack) = @_;
    my $name = $vol->{name};
    open(my $map, '<&=', $vol->{map_fd}) or die "map fd: $!\n";
    sysopen(my $dev, $vol->{device}, O_RDONLY) or die "$vol->{device}: $!\n";
    sysopen(my $img, "$outdir/$name.img", O_WRONLY | O_CREAT | O_TRUNC, 0600) or die "$name.img: $!\n";
    truncate($img, $vol->{size}) or die "truncate: $!\n";
    open(my $list, '>', "$outdir/$name.map") or die "$name.map: $!\n";
    my ($n, $bytes) = (0, 0);
    each_region($map, sub {
        my ($off, $len) = @_;
        for (my $done = 0; $done < $len; $done += $CHUNK) {
            my $piece = $len - $done < $CHUNK ? $len - $done : $CHUNK;
            sysseek($dev, $off + $done, SEEK_SET) or die "seek: $!\n";
            my $buf = read_exact($dev, $piece, "$vol->{device} ends early");
            sysseek($img, $off + $done, SEEK_SET) or die "seek: $!\n";
            write_all($img, $buf, "$name.img");
        }
        # Only now is the region all written.
        write_all($ack, "$name $off $len\n", 'ack') if !$ENV{PROVIDER_NO_ACK};
        print $list "$off $len\n";
        ($n, $bytes) = ($n + 1, $bytes + $len);
    });
    print $list "end $n $bytes\n";
    close($list) or die "$name.map: $!\n";
    $img->sync or die "sync: $!\n";
    print "provider.pl: $name: $n regions, $bytes bytes read from $vol->{device}\n";
}

die "usage: provider.pl OUTDIR (run by nbdattach run)\n" if @ARGV != 1;
my $run = decode_json($ENV{NBDATTACH_RUN} // die "NBDATTACH_RUN not set\n");
open(my $ack, '>&=', $run->{ack_fd}) or die "ack fd: $!\n";
$ack->autoflush(1);
backup_volume($_, $ARGV[0], $ack) for @{$run->{volumes}};
