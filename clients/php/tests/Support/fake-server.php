<?php

/**
 * A tiny stand-in for otpd that misbehaves on purpose, run as its own process by FakeServer.
 *
 *   php fake-server.php SOCKET MODE [ARGS...]
 *
 * It listens on SOCKET, serves connections one after another and prints one line per event to
 * stdout ("request <call_id> <method>", "closed-by-client", "connection <n>", ...). It stops
 * after 10 s without a connection, or when told by its mode. Modes:
 *
 *   oversize LENGTH       answer every request with a header announcing LENGTH bytes, and no body
 *   flag BYTE             answer with a valid response whose flag byte is BYTE
 *   wrong-id              answer with a valid response for another call id
 *   silent                read requests and never answer
 *   hang-up               read one request and close the connection without an answer
 *   status CODE MESSAGE [RETRY_AFTER [LOCKED_UNTIL]]
 *                         answer every request with that status and an ErrorDetail
 *   ok                    answer every request with OK and an empty payload
 *   ok-then-close         answer OK, then close the connection (as a restarting daemon does)
 *   ok-then-stray         answer OK, then send a frame nobody asked for and keep the connection
 *   padded LENGTH         answer OK with a payload that makes the envelope exactly LENGTH bytes
 */

declare(strict_types=1);

require dirname(__DIR__, 2) . '/autoload.php';

use Otp\V1\ErrorDetail;
use Otp\V1\Request;
use Otp\V1\Response;
use Otp\V1\Status;

[$script, $socket, $mode] = $argv + [null, null, null];
$args = array_slice($argv, 3);
if ($socket === null || $mode === null) {
    fwrite(STDERR, "usage: php fake-server.php SOCKET MODE [ARGS...]\n");
    exit(2);
}

function say(string $line): void
{
    fwrite(STDOUT, $line . "\n");
    fflush(STDOUT);
}

/** Reads exactly $n bytes, or null at EOF or after 10 s. */
function readExactly($conn, int $n): ?string
{
    $buffer = '';
    while (strlen($buffer) < $n) {
        $chunk = fread($conn, $n - strlen($buffer));
        if ($chunk === false || $chunk === '') {
            return null;
        }
        $buffer .= $chunk;
    }
    return $buffer;
}

function readRequest($conn): ?Request
{
    $header = readExactly($conn, 5);
    if ($header === null) {
        return null;
    }
    $length = unpack('N', substr($header, 1))[1];
    $body = $length > 0 ? readExactly($conn, $length) : '';
    if ($body === null) {
        return null;
    }
    $request = new Request();
    $request->mergeFromString($body);
    say('request ' . $request->getCallId() . ' ' . $request->getMethod() . ' deadline_ms=' . $request->getDeadlineMs());
    return $request;
}

function frame(Response $response, int $flag = 0): string
{
    $body = $response->serializeToString();
    return chr($flag) . pack('N', strlen($body)) . $body;
}

/** Waits until the client closes the connection (or 10 s pass) and says which. */
function awaitClose($conn): void
{
    $chunk = fread($conn, 65536);
    while ($chunk !== false && $chunk !== '') {
        $chunk = fread($conn, 65536);
    }
    say(feof($conn) ? 'closed-by-client' : 'still-open');
}

@unlink($socket);
$server = stream_socket_server('unix://' . $socket, $errno, $errstr);
if ($server === false) {
    fwrite(STDERR, "cannot listen on $socket: $errstr\n");
    exit(1);
}
say('listening');

$connections = 0;
while (($conn = @stream_socket_accept($server, 10.0)) !== false) {
    $connections++;
    say("connection $connections");
    stream_set_timeout($conn, 10);
    while (($request = readRequest($conn)) !== null) {
        $ok = new Response(['call_id' => $request->getCallId(), 'status' => new Status(['code' => 0])]);
        switch ($mode) {
            case 'oversize':
                fwrite($conn, "\0" . pack('N', (int) $args[0]));
                awaitClose($conn);
                break 2;
            case 'flag':
                fwrite($conn, frame($ok, (int) $args[0]));
                awaitClose($conn);
                break 2;
            case 'wrong-id':
                $ok->setCallId($request->getCallId() + 1000);
                fwrite($conn, frame($ok));
                awaitClose($conn);
                break 2;
            case 'silent':
                awaitClose($conn);
                break 2;
            case 'hang-up':
                break 2;
            case 'status':
                $detail = new ErrorDetail([
                    'retry_after_seconds' => (int) ($args[2] ?? 0),
                    'locked_until' => (int) ($args[3] ?? 0),
                ]);
                fwrite($conn, frame(new Response([
                    'call_id' => $request->getCallId(),
                    'status' => new Status(['code' => (int) $args[0], 'message' => $args[1]]),
                    'payload' => isset($args[2]) ? $detail->serializeToString() : '',
                ])));
                break;
            case 'ok':
                fwrite($conn, frame($ok));
                break;
            case 'ok-then-close':
                fwrite($conn, frame($ok));
                break 2;
            case 'ok-then-stray':
                fwrite($conn, frame($ok));
                fwrite($conn, frame(new Response([
                    'call_id' => 0,
                    'status' => new Status(['code' => 14, 'message' => 'stray']),
                ])));
                say('stray-sent');
                break;
            case 'padded':
                $length = (int) $args[0];
                for ($n = $length; $n >= 0; $n--) {
                    $ok->setPayload(str_repeat('x', $n));
                    if (strlen($ok->serializeToString()) === $length) {
                        break;
                    }
                }
                fwrite($conn, frame($ok));
                break;
            default:
                fwrite(STDERR, "unknown mode $mode\n");
                exit(2);
        }
    }
    fclose($conn);
    say('connection-done');
}
say('done');
