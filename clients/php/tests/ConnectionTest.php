<?php

declare(strict_types=1);

namespace Otpd\Client\Tests;

use Otp\V1\GetStatusRequest;
use Otp\V1\Response;
use Otp\V1\Status;
use Otpd\Client\Client;
use Otpd\Client\Exception\DeadlineExceededException;
use Otpd\Client\Exception\OtpdException;
use Otpd\Client\Exception\ProtocolException;
use Otpd\Client\Exception\RateLimitedException;
use Otpd\Client\Exception\UnavailableException;
use Otpd\Client\Tests\Support\FakeServer;
use Otpd\Client\Tests\Support\OtpdTestCase;

/** Framing, timeouts, broken connections and the response size limit. */
final class ConnectionTest extends OtpdTestCase
{
    public function testADaemonRestartBetweenTwoCallsIsSurvivedByReconnecting(): void
    {
        $account = $this->account();
        $this->client->savePhone($account, '+1 555 123 4567');
        $daemon = self::daemon();
        $pid = $daemon->pid();
        $daemon->restart();
        self::assertNotSame($pid, $daemon->pid());
        // The client still holds the connection to the old daemon; it finds it broken before
        // sending, opens a new one and the call goes through. State survived the restart.
        $status = $this->client->status($account);
        self::assertSame('+1******4567', $status->getPhoneMasked());
        self::assertSame('SERVING', $this->client->health()->getStatus());
    }

    /** @return iterable<string, array{string, string}> mode, event after which the connection is broken */
    public static function brokenIdleConnections(): iterable
    {
        yield 'closed by the server' => ['ok-then-close', 'connection-done'];
        yield 'holding bytes nobody asked for' => ['ok-then-stray', 'stray-sent'];
    }

    /** @dataProvider brokenIdleConnections */
    public function testABrokenIdleConnectionIsReplacedOnceBeforeSending(string $mode, string $broken): void
    {
        $server = new FakeServer($mode);
        $client = new Client($server->socket, 2.0);
        $client->health();
        $server->waitFor($broken);
        $client->health();
        $client->close();
        $server->waitFor('connection 2');
        usleep(50_000);
        $events = $server->stop();
        // Each call was sent exactly once; the second on a new connection.
        self::assertSame(
            ['connection 1', 'request 1 /otp.v1.TwoFactor/Health deadline_ms=2000',
             'connection 2', 'request 2 /otp.v1.TwoFactor/Health deadline_ms=2000'],
            array_values(array_filter($events, static fn ($e) => preg_match('/^(connection|request) /', $e) === 1)),
        );
    }

    public function testAStoppedDaemonIsUnavailableAndTheClientRecoversWhenItIsBack(): void
    {
        self::assertSame('SERVING', $this->client->health()->getStatus());
        $daemon = self::daemon();
        $daemon->stop();
        try {
            try {
                $this->client->health();
                self::fail('a stopped daemon cannot answer');
            } catch (UnavailableException $e) {
                self::assertSame(14, $e->getCode());
                self::assertStringContainsString($daemon->socket, $e->getMessage());
            }
        } finally {
            $daemon->start();
        }
        self::assertSame('SERVING', $this->client->health()->getStatus());
    }

    public function testNoDaemonAtThePathIsUnavailable(): void
    {
        $client = new Client(sys_get_temp_dir() . '/otpd-php-no-such-dir/otpd.sock', 1.0);
        $this->expectException(UnavailableException::class);
        $this->expectExceptionCode(14);
        $client->health();
    }

    public function testACallWhoseAnswerNeverCameIsNotRepeated(): void
    {
        $server = new FakeServer('hang-up');
        $client = new Client($server->socket, 2.0);
        try {
            $client->health();
            self::fail('no answer came');
        } catch (UnavailableException $e) {
            self::assertNotInstanceOf(DeadlineExceededException::class, $e);
            self::assertStringContainsString('may have acted', $e->getMessage());
        }
        $server->waitFor('connection-done');
        usleep(100_000);
        $events = $server->stop();
        $requests = array_filter($events, static fn ($e) => str_starts_with($e, 'request '));
        self::assertCount(1, $requests, implode(' | ', $events));
        self::assertCount(1, array_filter($events, static fn ($e) => str_starts_with($e, 'connection ')));
    }

    public function testAResponseOverTheMaximumIsRefusedWithoutReadingItsBody(): void
    {
        $server = new FakeServer('oversize', (string) (64 * 1024 + 1));
        $client = new Client($server->socket, 5.0);
        try {
            $client->health();
            self::fail('a 64 KiB + 1 answer must be refused');
        } catch (ProtocolException $e) {
            self::assertSame(13, $e->getCode());
            self::assertStringContainsString('65537 bytes', $e->getMessage());
        }
        // The server sent only the 5-byte header: a client waiting for the body would have run
        // into its 5 s timeout (a DeadlineExceededException) instead. It closes the connection.
        $server->waitFor('closed-by-client', 2.0);
        $server->stop();
    }

    public function testARequestOverTheDaemonsMaximumIsRefusedAndTheNextCallWorks(): void
    {
        try {
            $this->client->callRaw(Client::METHOD_PREFIX . 'Health', str_repeat('x', 64 * 1024));
            self::fail('otpd refuses a frame over 64 KiB');
        } catch (RateLimitedException $e) {
            // gRPC's RESOURCE_EXHAUSTED for a message too large, sent with call id 0; otpd then
            // closes the connection.
            self::assertSame(8, $e->getCode());
            self::assertStringContainsString('exceeds the maximum', $e->getMessage());
        }
        self::assertSame('SERVING', $this->client->health()->getStatus());
    }

    public function testAResponseOfExactlyTheMaximumIsAccepted(): void
    {
        $server = new FakeServer('padded', (string) (64 * 1024));
        $payload = (new Client($server->socket, 5.0))->callRaw(Client::METHOD_PREFIX . 'Health');
        $server->stop();
        $envelope = new Response(['call_id' => 1, 'status' => new Status(), 'payload' => $payload]);
        self::assertSame(64 * 1024, strlen($envelope->serializeToString()));
    }

    public function testTheMaximumIsConfigurable(): void
    {
        $server = new FakeServer('padded', '2000');
        $client = new Client($server->socket, 5.0, 1999);
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('2000 bytes, more than the maximum of 1999');
        try {
            $client->callRaw(Client::METHOD_PREFIX . 'Health');
        } finally {
            $server->stop();
        }
    }

    public function testAFrameWithANonZeroFlagByteIsRefused(): void
    {
        $server = new FakeServer('flag', '1');
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('flag byte 1');
        try {
            (new Client($server->socket, 2.0))->health();
        } finally {
            $server->stop();
        }
    }

    public function testAnAnswerToAnotherCallIsRefused(): void
    {
        $server = new FakeServer('wrong-id');
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('otpd answered call 1001 to call 1');
        try {
            (new Client($server->socket, 2.0))->health();
        } finally {
            $server->stop();
        }
    }

    public function testNoAnswerWithinTheTimeoutIsDeadlineExceeded(): void
    {
        $server = new FakeServer('silent');
        $client = new Client($server->socket, 5.0);
        $started = microtime(true);
        try {
            $client->getStatus(new GetStatusRequest(['account_id' => 'a']), 0.3);
            self::fail('the server never answers');
        } catch (DeadlineExceededException $e) {
            self::assertInstanceOf(UnavailableException::class, $e);
            self::assertSame(4, $e->getCode());
        }
        $elapsed = microtime(true) - $started;
        self::assertGreaterThanOrEqual(0.3, $elapsed);
        // The call carried its deadline, and the client gave up the connection.
        self::assertSame('request 1 /otp.v1.TwoFactor/GetStatus deadline_ms=300', $server->waitFor('request '));
        $server->waitFor('closed-by-client', 2.0);
        $server->stop();
    }

    public function testEveryRpcOfTheServiceHasATypedMethodWithItsWireName(): void
    {
        $rpcs = self::serviceRpcs();
        self::assertGreaterThanOrEqual(15, count($rpcs));
        $server = new FakeServer('ok');
        $client = new Client($server->socket, 2.0);
        $class = new \ReflectionClass(Client::class);
        foreach ($rpcs as $rpc => [$requestType, $responseType]) {
            $method = $class->getMethod(lcfirst($rpc));
            self::assertSame($rpc, ucfirst($method->getName()));
            $parameterType = ltrim((string) $method->getParameters()[0]->getType(), '?');
            self::assertSame('Otp\\V1\\' . $requestType, $parameterType, $rpc);
            self::assertSame('Otp\\V1\\' . $responseType, (string) $method->getReturnType(), $rpc);
            $requestClass = 'Otp\\V1\\' . $requestType;
            $answer = $method->invoke($client, new $requestClass());
            self::assertInstanceOf('Otp\\V1\\' . $responseType, $answer);
        }
        $client->close();
        $server->waitFor('connection-done');
        $events = $server->stop();
        // One connection, call ids 1, 2, 3, ... and the method names of the service, in order.
        $expected = [];
        $id = 1;
        foreach (array_keys($rpcs) as $rpc) {
            $expected[] = 'request ' . $id++ . " /otp.v1.TwoFactor/$rpc deadline_ms=2000";
        }
        $only = static fn (string $prefix) => array_values(
            array_filter($events, static fn ($e) => str_starts_with($e, $prefix)),
        );
        self::assertSame($expected, $only('request '));
        self::assertSame(['connection 1'], $only('connection '));
    }

    public function testTimeoutsAndSizesAreChecked(): void
    {
        $bad = [fn () => new Client('', 1.0), fn () => new Client('/x', 0.0), fn () => new Client('/x', 1.0, 0)];
        foreach ($bad as $make) {
            try {
                $make();
                self::fail('invalid arguments must be refused');
            } catch (\InvalidArgumentException $e) {
                self::assertNotInstanceOf(OtpdException::class, $e);
            }
        }
    }

    /** @return array<string, array{string, string}> rpc name => [request type, response type], from the .proto */
    private static function serviceRpcs(): array
    {
        $proto = file_get_contents(dirname(__DIR__, 3) . '/proto/otp/v1/two_factor.proto');
        preg_match_all('/^\s*rpc\s+(\w+)\s*\(\s*(\w+)\s*\)\s*returns\s*\(\s*(\w+)\s*\)/m', $proto, $m, PREG_SET_ORDER);
        $rpcs = [];
        foreach ($m as [, $rpc, $request, $response]) {
            $rpcs[$rpc] = [$request, $response];
        }
        return $rpcs;
    }
}
