<?php
/*
 * The frame of every page. Copy this file into one of Config::$templateDirectories to give the
 * pages the shop's look. $v holds the page's values, $h->e() escapes; $v['content'] is the page.
 */
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title><?= $h->e($v['title'] ?? 'Two-step verification') ?></title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1d2327; background: #f0f0f1; }
main { max-width: 36rem; margin: 2rem auto; background: #fff; padding: 1.5rem 2rem; border-radius: 6px;
       box-shadow: 0 1px 3px rgba(0,0,0,.1); }
h1 { font-size: 1.4rem; margin-top: 0; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .2rem; }
nav { max-width: 36rem; margin: 1rem auto 0; font-size: .9rem; }
nav a { margin-right: 1rem; }
label { display: block; margin: .8rem 0 .3rem; font-weight: 600; }
input[type=text], input[type=tel] { font-size: 1.1rem; padding: .4rem; width: 16rem; max-width: 100%; }
button { font-size: 1rem; padding: .45rem 1rem; margin: .5rem .5rem .5rem 0; cursor: pointer; }
button.link { background: none; border: none; color: #2271b1; text-decoration: underline; padding: 0; }
.note { color: #50575e; font-size: .95rem; }
.message { padding: .6rem .9rem; border-radius: 4px; margin: .8rem 0; }
.error { background: #fcf0f1; border-left: 4px solid #d63638; }
.warning { background: #fcf9e8; border-left: 4px solid #dba617; }
.success, .verified { background: #edfaef; border-left: 4px solid #00a32a; }
.info, .not-verified { background: #f0f6fc; border-left: 4px solid #72aee6; }
.codes { font: 1.2rem/1.8 ui-monospace, monospace; columns: 2; list-style: none; padding: 0; }
.secret { font: 1.1rem ui-monospace, monospace; word-spacing: .3rem; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: .4rem .3rem; border-bottom: 1px solid #dcdcde; vertical-align: top; }
form.inline { display: inline; }
@media print { nav, form, .no-print { display: none; } main { box-shadow: none; } }
</style>
</head>
<body>
<?php if ($v['signedIn'] ?? false) : ?>
<nav><a href="<?= $h->e($v['afterLoginUrl']) ?>">Dashboard</a>
<a href="<?= $h->e($v['url']('profile')) ?>" id="profile-link">Profile</a></nav>
<?php endif; ?>
<main>
<h1><?= $h->e($v['title'] ?? 'Two-step verification') ?></h1>
<?php foreach ($v['flash'] ?? [] as $message) : ?>
<p class="message <?= $h->e($message['kind']) ?>" role="status"><?= $h->e($message['text']) ?></p>
<?php endforeach; ?>
<?php foreach ($v['errors'] ?? [] as $error) : ?>
<p class="message error" role="alert"><?= $h->e($error) ?></p>
<?php endforeach; ?>
<?= $v['content'] ?>
</main>
</body>
</html>
