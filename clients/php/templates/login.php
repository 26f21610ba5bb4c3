<?php
/*
 * The second step of the login. $v['method']: sms, totp or backup; $v['methods']: those the
 * account has; $v['codeSent'], $v['destination'], $v['resendWait'] ("" or "in 25 seconds").
 */
$names = ['sms' => 'a text message', 'totp' => 'your authenticator app', 'backup' => 'a backup code'];
?>
<?php if ($v['method'] === 'sms' && !$v['codeSent']) : ?>
<p id="prompt">Ask for a code by text message to <strong><?= $h->e($v['destination']) ?></strong>.</p>
<?php else : ?>
<form method="post" action="<?= $h->e($v['url']('login')) ?>" autocomplete="off">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="verify">
    <?php if ($v['method'] === 'sms') : ?>
<p id="prompt">We sent a code by text message to <strong><?= $h->e($v['destination']) ?></strong>. Enter it below.</p>
<label for="code">Code from the text message</label>
    <?php elseif ($v['method'] === 'totp') : ?>
<p id="prompt">Open your authenticator app and enter the code it shows for this shop.</p>
<label for="code">Code from the authenticator app</label>
    <?php else : ?>
<p id="prompt">Enter one of your backup codes. Each code works once.</p>
<label for="code">Backup code</label>
    <?php endif; ?>
<input type="text" id="code" name="code" required autofocus
       inputmode="<?= $v['method'] === 'backup' ? 'text' : 'numeric' ?>" autocomplete="one-time-code">
<button type="submit" id="verify">Verify</button>
</form>
<?php endif; ?>
<?php if ($v['method'] === 'sms') : ?>
<form method="post" action="<?= $h->e($v['url']('login')) ?>">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="resend">
    <?php if ($v['resendWait'] !== '') : ?>
<button type="submit" id="resend" disabled><?= $v['codeSent'] ? 'Send again' : 'Send a code' ?></button>
<span class="note" id="resend-wait">You can ask for a new code <?= $h->e($v['resendWait']) ?> (reload the page then).</span>
    <?php else : ?>
<button type="submit" id="resend"><?= $v['codeSent'] ? 'Send again' : 'Send a code' ?></button>
    <?php endif; ?>
</form>
<?php endif; ?>
<?php if (count($v['methods']) > 1) : ?>
<p class="note">Other ways to sign in:
    <?php foreach ($v['methods'] as $other) : ?>
        <?php if ($other !== $v['method']) : ?>
<a id="use-<?= $h->e($other) ?>" href="<?= $h->e($v['url']('login', ['method' => $other])) ?>">use <?= $h->e($names[$other]) ?></a>
        <?php endif; ?>
    <?php endforeach; ?>
</p>
<?php endif; ?>
<p class="note"><a href="<?= $h->e($v['loginUrl']) ?>">Cancel and sign in again</a></p>
