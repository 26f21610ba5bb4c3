<?php
/* Backup codes: a new set shown once, with download and print; else the count and a new set. */
?>
<?php if ($v['codes'] !== null) : ?>
<p class="message warning" id="once"><strong>These codes are shown only once.</strong> Download or print them
now and keep them somewhere safe, away from your phone. Each code lets you sign in once.</p>
<ul class="codes" id="codes">
    <?php foreach ($v['codes'] as $code) : ?>
<li><?= $h->e($code) ?></li>
    <?php endforeach; ?>
</ul>
<form method="post" action="<?= $h->e($v['url']('backup')) ?>" class="inline">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="download">
<button type="submit" id="download">Download as a text file</button>
</form>
<button type="button" id="print" class="no-print">Print</button>
<script><?= $v['printScript'] ?></script>
<form method="post" action="<?= $h->e($v['url']('backup')) ?>">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="done">
<button type="submit" id="done">I have saved my backup codes</button>
</form>
<?php else : ?>
<p id="remaining">You have <strong><?= $h->e($v['remaining']) ?></strong> unused backup codes.</p>
    <?php if ($v['low']) : ?>
<p class="message warning" id="low">You are running out of backup codes. Make a new set.</p>
    <?php endif; ?>
    <?php if ($v['canMake']) : ?>
<form method="post" action="<?= $h->e($v['url']('backup')) ?>">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="new">
<button type="submit" id="new-codes">Make new backup codes</button>
</form>
<p class="note">A new set replaces the old one: the old codes stop working.</p>
    <?php endif; ?>
<p class="note"><a href="<?= $h->e($v['url']('profile')) ?>">Back to your profile</a></p>
<?php endif; ?>
