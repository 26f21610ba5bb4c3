<?php
/*
 * Adding an authenticator app: the QR code as an image in the page, the secret as text for
 * typing in by hand, and a first code to confirm.
 */
?>
<?php if ($v['enrolling']) : ?>
<p>Scan this code with your authenticator app (Google Authenticator, Microsoft Authenticator, 1Password, ...):</p>
    <?php if ($v['qr'] !== null) : ?>
<p><img id="qr" src="<?= $h->e($v['qr']) ?>" width="240" height="240"
        alt="QR code for <?= $h->e($v['issuer']) ?> (<?= $h->e($v['label']) ?>)"></p>
    <?php else : ?>
<p class="message warning">The QR image cannot be drawn on this server (php-bacon-qr-code is missing).</p>
    <?php endif; ?>
<p>Or type this key into the app (time-based): <br><span class="secret" id="secret"><?= $h->e($v['secret']) ?></span></p>
<form method="post" action="<?= $h->e($v['url']('totp')) ?>" autocomplete="off">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="confirm">
<label for="code">The code the app shows now</label>
<input type="text" id="code" name="code" required autofocus inputmode="numeric" autocomplete="one-time-code">
<button type="submit" id="confirm">Confirm</button>
</form>
<?php elseif ($v['enabled']) : ?>
<p class="message success" id="totp-on">The authenticator app is on.</p>
<?php else : ?>
<p>An authenticator app on your phone shows a new code every 30 seconds; it works without a network.</p>
<form method="post" action="<?= $h->e($v['url']('totp')) ?>">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="begin">
<button type="submit" id="begin">Set up an authenticator app</button>
</form>
<?php endif; ?>
<?php if (!$v['pending']) : ?>
<p class="note"><a href="<?= $h->e($v['url']('profile')) ?>">Back to your profile</a></p>
<?php endif; ?>
