<?php

declare(strict_types=1);

namespace Otpd\Client\Tests\Support;

use Otpd\Client\Web\Pages;
use Otpd\Client\Web\Request;
use Otpd\Client\Web\Response;
use Otpd\Client\Web\Session;

/**
 * Drives Pages as a browser would, without HTTP: GET a page, POST a form with the CSRF token
 * the last page carried, follow redirects within the pages.
 */
final class Browser
{
    public ?Response $last = null;

    public function __construct(private readonly Pages $pages, private readonly Session $session)
    {
    }

    /** @param array<string, string> $query */
    public function get(string $page, array $query = []): Response
    {
        return $this->last = $this->pages->handle(new Request('GET', ['page' => $page] + $query));
    }

    /** @param array<string, string> $form POSTs with the session's CSRF token unless $form has one */
    public function post(string $page, array $form, array $query = []): Response
    {
        $form += ['_csrf' => (string) $this->session->get('csrf')];
        return $this->last = $this->pages->handle(new Request('POST', ['page' => $page] + $query, $form));
    }

    /** GETs where a redirect points, when it points into the pages; returns the final response. */
    public function follow(Response $response): Response
    {
        for ($i = 0; $i < 5 && $response->status === 303; $i++) {
            $location = (string) $response->header('Location');
            $query = [];
            parse_str((string) parse_url($location, PHP_URL_QUERY), $query);
            if (!str_starts_with($location, '/2fa') || !isset($query['page'])) {
                return $response;
            }
            $response = $this->get((string) $query['page'], array_diff_key($query, ['page' => 1]));
        }
        return $response;
    }

    /** The visible text of a page's <main> (the whole body otherwise), whitespace collapsed. */
    public static function text(Response $response): string
    {
        $body = $response->body;
        if (preg_match('~<main>(.*)</main>~s', $body, $m) === 1) {
            $body = $m[1];
        }
        return trim((string) preg_replace('/\s+/', ' ', html_entity_decode(strip_tags($body))));
    }
}
