<?php
/* The profile page: each factor, its state and what can be done with it. */
$s = $v['status'];
$csrf = '<input type="hidden" name="_csrf" value="' . $h->e($v['csrf']) . '">';
$action = $h->e($v['url']('profile'));
?>
<p>Signed in as <strong><?= $h->e($v['label']) ?></strong>.</p>
<?php if ($v['withoutSecondFactor']) : ?>
<p class="message warning">You signed in with your password alone: the two-step service was down.</p>
<?php endif; ?>
<?php if ($v['lock'] !== '') : ?>
<p class="message error"><?= $h->e($v['lock']) ?></p>
<?php endif; ?>
<?php if ($s['setupRequired']) : ?>
<p class="message warning" id="setup-required">Two-step verification is off. Set up text messages or an
authenticator app.</p>
<?php endif; ?>
<table>
<tr><th>Text messages</th><td id="sms-state">
<?php if ($s['sms']) : ?>
On: <?= $h->e($s['phone']) ?> (verified)
<?php elseif ($s['phone'] !== '') : ?>
Off: <?= $h->e($s['phone']) ?> is not verified
<?php else : ?>
Off
<?php endif; ?>
<?php if ($s['pendingPhone'] !== '') : ?>
<br>New number <?= $h->e($s['pendingPhone']) ?> is not verified yet.
<?php endif; ?>
<br><a href="<?= $h->e($v['url']('sms')) ?>" id="sms-configure">SMS/Text message configure</a>
</td><td>
<?php if ($s['sms']) : ?>
<form method="post" action="<?= $action ?>"><?= $csrf ?><input type="hidden" name="action" value="disable_sms">
<button type="submit" id="disable-sms">Turn off</button></form>
<?php endif; ?>
</td></tr>
<tr><th>Authenticator app</th><td id="totp-state"><?= $s['totp'] ? 'On' : 'Off' ?></td><td>
<?php if ($s['totp']) : ?>
<form method="post" action="<?= $action ?>"><?= $csrf ?><input type="hidden" name="action" value="disable_totp">
<button type="submit" id="disable-totp">Turn off</button></form>
<?php else : ?>
<form method="post" action="<?= $action ?>"><?= $csrf ?><input type="hidden" name="action" value="add_totp">
<button type="submit" id="add-totp">Add</button></form>
<?php endif; ?>
</td></tr>
<tr><th>Backup codes</th><td id="backup-state"><?= $h->e($s['backupRemaining']) ?> left
<?php if ($v['low']) : ?>
<br><span class="message warning" id="low">Running low: make a new set.</span>
<?php endif; ?>
<br><a href="<?= $h->e($v['url']('backup')) ?>" id="backup-link">Backup codes</a>
</td><td>
<?php if ($s['backupRemaining'] > 0) : ?>
<form method="post" action="<?= $action ?>"><?= $csrf ?><input type="hidden" name="action" value="disable_backup">
<button type="submit" id="disable-backup">Turn off</button></form>
<?php endif; ?>
</td></tr>
<?php if ($s['sms'] && $s['totp']) : ?>
<tr><th>Preferred method</th><td colspan="2">
<form method="post" action="<?= $action ?>"><?= $csrf ?><input type="hidden" name="action" value="preferred">
<select name="method" id="preferred">
<option value="sms"<?= $s['preferred'] === 'sms' ? ' selected' : '' ?>>Text message</option>
<option value="totp"<?= $s['preferred'] === 'totp' ? ' selected' : '' ?>>Authenticator app</option>
</select> <button type="submit" id="save-preferred">Save</button></form>
</td></tr>
<?php endif; ?>
</table>
<p class="note">Every change asks for a code from your phone or your authenticator app first.</p>
