<?php

declare(strict_types=1);

namespace Otpd\Client\Web;

/**
 * Renders the page templates: plain PHP files, looked up in the shop's directories first and
 * then in clients/php/templates, so a shop restyles a page by copying one file. Every value a
 * template prints goes through e() (HTML escaping); templates get $v (the values), $h (this).
 */
final class View
{
    /** @var list<string> */
    private array $directories;

    /** @param list<string> $directories the shop's template directories, searched in order */
    public function __construct(array $directories = [])
    {
        $this->directories = [...$directories, dirname(__DIR__, 2) . '/templates'];
    }

    /** @param array<string, mixed> $values */
    public function render(string $template, array $values): string
    {
        $file = $this->find($template);
        $content = self::include($file, $values, $this);
        if ($template === 'layout') {
            return $content;
        }
        return self::include($this->find('layout'), $values + ['content' => $content], $this);
    }

    /** HTML-escapes a value for text and attributes. */
    public function e(mixed $value): string
    {
        return htmlspecialchars((string) $value, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
    }

    private function find(string $template): string
    {
        if (preg_match('/^[a-z][a-z0-9-]*$/', $template) !== 1) {
            throw new \InvalidArgumentException("bad template name $template");
        }
        foreach ($this->directories as $directory) {
            $file = rtrim($directory, '/') . "/$template.php";
            if (is_file($file)) {
                return $file;
            }
        }
        throw new \RuntimeException("template $template.php not found");
    }

    /** @param array<string, mixed> $v */
    private static function include(string $file, array $v, self $h): string
    {
        ob_start();
        try {
            (static function (string $__file, array $v, View $h): void {
                require $__file;
            })($file, $v, $h);
        } catch (\Throwable $e) {
            ob_end_clean();
            throw $e;
        }
        return (string) ob_get_clean();
    }
}
